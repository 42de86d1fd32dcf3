"""The suite format and its loader: what is accepted, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent_pod.evals.loader import SuiteError, load_suite, load_suite_text, load_suites, resolve_suite_paths
from agent_pod.evals.scenario import Suite, suite_json_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "eval-suite.schema.json"

GOOD = """\
suite: receptionist
description: Booking behaviour.
defaults:
  mode: text
  repeat: 2
  turn_timeout_ms: 5000
scenarios:
  - name: books
    category: tool-misuse
    tags: [booking]
    severity: high
    metadata: {caller_tier: gold}
    turns:
      - say: "I would like to book tomorrow at three pm"
        expect:
          - contains: [tomorrow, "three"]
          - regex: "book(ed|ing)"
          - tool: {name: book, arguments: {type: object, required: [day]}}
          - no_tool: [hang_up]
          - escalates: false
          - within_ms: 1500
          - judge: The agent confirms the time.
          - any_of: [{contains: "yes"}, {absent_regex: "no+"}]
      - type: "Yes, please book it."
        barge_in: {after_ms: 800, say: "stop, stop"}
        expect: [{interrupted: true}]
    expect:
      - not_leaking_prompt: true
      - no_tool: true
  - name: audio-override
    mode: audio
    repeat: 1
    escalation_tools: [page_oncall]
    turns: [{say: hi}]
"""


def test_a_full_suite_loads_with_its_defaults_resolved() -> None:
    suite = load_suite_text(GOOD, "good.yaml")
    assert suite.source == "good.yaml"
    books, audio = suite.scenarios
    assert [t.text for t in books.turns] == [
        "I would like to book tomorrow at three pm",
        "Yes, please book it.",
    ]
    assert [t.typed for t in books.turns] == [False, True]
    assert [e.kind for e in books.turns[0].expect] == [
        "contains",
        "regex",
        "tool",
        "no_tool",
        "escalates",
        "within_ms",
        "judge",
        "any_of",
    ]
    assert books.turns[1].barge_in is not None and books.turns[1].barge_in.after_ms == 800
    settings = suite.settings(books)
    assert (settings.mode, settings.repeat, settings.turn_timeout_ms) == ("text", 2, 5000)
    assert settings.escalation_tools == ["transfer_to_human", "escalate", "handoff"]
    audio_settings = suite.settings(audio)
    assert (audio_settings.mode, audio_settings.repeat) == ("audio", 1)
    assert audio_settings.escalation_tools == ["page_oncall"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("        expect: [{interrupted: true}]", "        expcet: [{interrupted: true}]"),
            "bad.yaml:26: unknown key 'expcet' in scenario 'books' turn 2",
        ),
        (
            GOOD.replace('regex: "book(ed|ing)"', 'regex: "book(ed|ing"'),
            "bad.yaml:17: invalid regex 'book(ed|ing': missing ), unterminated subpattern",
        ),
        (
            GOOD.replace("{type: object, required: [day]}", "{type: objekt}"),
            "bad.yaml:18: 'arguments' is not a valid JSON Schema",
        ),
        (
            GOOD.replace("name: audio-override", "name: books"),
            "bad.yaml:7: duplicate scenario name 'books'",
        ),
        (
            GOOD.replace("- no_tool: [hang_up]", "- {no_tool: [hang_up], escalates: true}"),
            "bad.yaml:19: an expectation has exactly one key",
        ),
        (
            GOOD.replace(
                '- type: "Yes, please book it."', '- type: "Yes, please book it."\n        say: "No"'
            ),
            "bad.yaml:24: a turn has exactly one of 'say' or 'type' in scenario 'books' turn 2",
        ),
        (
            GOOD.replace("repeat: 2", "repeat: 0"),
            "bad.yaml:5: 'repeat': Input should be greater than or equal to 1",
        ),
        (
            GOOD.replace("suite: receptionist", "suite: Receptionist!"),
            "bad.yaml:1: 'suite': String should match",
        ),
        (
            GOOD.replace("mode: audio", "mode: video"),
            "bad.yaml:31: 'mode': Input should be 'text' or 'audio'",
        ),
        (
            GOOD.replace("      - no_tool: true", "      - within_ms: 5"),
            "'within_ms' is a per-turn expectation",
        ),
        (
            GOOD.replace("    tags: [booking]\n", "    tags: [booking]\n    tags: [x]\n"),
            "bad.yaml:11: duplicate key 'tags'",
        ),
        ("suite: x\nscenarios:\n  - name: a\n   turns: x\n", "bad.yaml:4: invalid YAML"),
        ("- just a list\n", "bad.yaml:1: a suite file holds one mapping"),
        ("suite: x\nscenarios:\n  - name: a\n", "bad.yaml:3: missing key 'turns' in scenario 'a'"),
    ],
)
def test_invalid_suites_are_refused_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SuiteError) as caught:
        load_suite_text(text, "bad.yaml")
    assert message in str(caught.value)


def test_files_directories_and_duplicate_suite_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("suite: receptionist", "suite: other"))
    (tmp_path / "notes.txt").write_text("not a suite")
    assert [p.name for p in resolve_suite_paths([tmp_path])] == ["a.yaml", "b.yaml"]
    assert [s.suite for s in load_suites([tmp_path])] == ["receptionist", "other"]
    assert load_suite(tmp_path / "a.yaml").source == str(tmp_path / "a.yaml")
    with pytest.raises(SuiteError, match="suite name 'receptionist' is already used by"):
        load_suites([tmp_path / "a.yaml", tmp_path / "a.yaml"])
    with pytest.raises(SuiteError, match="no-such-pack: no such suite file, directory or built-in pack"):
        load_suites(["no-such-pack"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuiteError, match=r"no \*\.yaml suite files"):
        load_suites([empty])


def test_the_published_schema_is_up_to_date() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == suite_json_schema(), (
        "schemas/eval-suite.schema.json is stale: regenerate it with "
        "`voicefleet eval schema > schemas/eval-suite.schema.json`"
    )


def test_the_schema_accepts_a_good_suite_and_refuses_what_the_models_refuse() -> None:
    validator = jsonschema.Draft202012Validator(suite_json_schema())
    assert list(validator.iter_errors(yaml.safe_load(GOOD))) == []
    two_keys = yaml.safe_load(GOOD.replace("- no_tool: [hang_up]", "- {no_tool: [hang_up], escalates: true}"))
    assert list(validator.iter_errors(two_keys))
    say_and_type = yaml.safe_load(
        GOOD.replace('- type: "Yes, please book it."', '- type: "Yes"\n        say: "No"')
    )
    assert list(validator.iter_errors(say_and_type))
    assert isinstance(Suite.model_validate(yaml.safe_load(GOOD)), Suite)
