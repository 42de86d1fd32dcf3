"""The eval runner against real in-process agent pods: text and audio calls, tools, barge-in,
latency budgets, repeats and flakes."""

from __future__ import annotations

import json
from typing import Any

from agent_pod.evals.driver import ScenarioCall
from agent_pod.evals.loader import load_suite_text
from agent_pod.evals.runner import RunOptions, run_evals
from agent_pod.evals.targets import EvalTarget
from tests.pipeline.toolserver import ToolServer, tool
from tests.support.pod import PodFactory, offline_config, synthetic_config

BOOK_RULE = {
    "match": "book",
    "say": "Let me book that.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
    "then": "You are booked, confirmation {result[confirmation]}.",
}


def scripted(rules: list[dict[str, Any]] | None = None, **llm_options: str) -> dict[str, Any]:
    options = {**llm_options, **({"rules": json.dumps(rules)} if rules else {})}
    return {"pipeline": {"llm": {"provider": "scripted", "options": options}}}


def fast_voice() -> dict[str, Any]:
    # Synthetic TTS at 5 ms of audio per character: answers play quickly, in real time.
    return {"pipeline": {"tts": {"provider": "synthetic", "options": {"ms_per_char": "5"}}}}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
    return out


async def test_text_calls_with_a_tool_are_recorded_and_graded(pod_factory: PodFactory) -> None:
    async with ToolServer() as server:
        config = synthetic_config(
            tools=[tool("book_table", server.url("/book"))], **merge(scripted([BOOK_RULE]), fast_voice())
        )
        pod = await pod_factory(config)
        suite = load_suite_text(
            """
suite: tools
scenarios:
  - name: books
    turns:
      - type: please book a table for two
        expect:
          - contains: [let me book that, "confirmation BK-19:00"]
          - tool: {name: book_table, arguments: {properties: {people: {const: 2}}, required: [time, people]}}
          - within_ms: 5000
      - type: hello
        expect:
          - contains: how can I help
          - no_tool: true
  - name: wrong-arguments
    turns:
      - type: book it
        expect:
          - tool: {name: book_table, arguments: {properties: {people: {const: 4}}}}
          - contains: you are not booked
""",
            "tools.yaml",
        )
        report = await run_evals([suite], EvalTarget(address=pod.grpc_address, description="test pod"))
    books, wrong = report.outcomes
    assert books.passed, books.first_failure
    [call] = books.runs[0].record.turns[0].tool_calls
    assert (call.name, call.state, json.loads(call.arguments_json)) == (
        "book_table",
        "succeeded",
        {"time": "19:00", "people": 2},
    )
    assert json.loads(call.result_json)["confirmation"] == "BK-19:00"
    assert [s.body for s in server.calls("/book")] == [{"time": "19:00", "people": 2}] * 2
    turn = books.runs[0].record.turns[0]
    assert turn.heard == "please book a table for two" and turn.response_latency_ms is not None
    assert not wrong.passed
    messages = [c.message for c in wrong.runs[0].failures]
    assert any("2 was expected" in m or "4 was expected" in m for m in messages), messages
    assert any("expected 'you are not booked'" in m for m in messages), messages
    assert (report.passed, report.total) == (1, 2)


async def test_typed_barge_in_interrupts_and_the_interruption_is_answered(pod_factory: PodFactory) -> None:
    pod = await pod_factory(synthetic_config(**fast_voice()))
    suite = load_suite_text(
        """
suite: barge
scenarios:
  - name: stops-the-story
    turns:
      - type: tell me a story
        barge_in: {after_ms: 400, say: "wait, what time is it"}
        expect:
          - interrupted: true
          - contains: what time is it
          - absent: lighthouse never went dark
  - name: not-interrupted
    turns:
      - type: hello
        expect: [{interrupted: true}]
""",
        "barge.yaml",
    )
    report = await run_evals([suite], EvalTarget(address=pod.grpc_address, description="test pod"))
    stops, calm = report.outcomes
    assert stops.passed, stops.first_failure
    turn = stops.runs[0].record.turns[0]
    assert turn.barge_in_sent and [a.interrupted for a in turn.answers] == [True, False]
    story = turn.answers[0]
    assert story.text.startswith(story.played_text.rstrip(".")) and len(story.played_text) < len(story.text)
    assert not calm.passed and "no answer was" in (calm.first_failure or "")


async def test_latency_budget_fails_a_slow_agent(pod_factory: PodFactory) -> None:
    pod = await pod_factory(synthetic_config(**merge(scripted(first_token_delay_ms="400"), fast_voice())))
    suite = load_suite_text(
        """
suite: latency
scenarios:
  - name: quick
    turns: [{type: hello, expect: [{within_ms: 150}]}]
  - name: relaxed
    turns: [{type: hello, expect: [{within_ms: 5000}]}]
""",
        "latency.yaml",
    )
    report = await run_evals([suite], EvalTarget(address=pod.grpc_address, description="test pod"))
    quick, relaxed = report.outcomes
    assert not quick.passed and "expected first audio within 150 ms; it came after" in (
        quick.first_failure or ""
    )
    assert relaxed.passed
    assert relaxed.p95_latency_ms is not None and relaxed.p95_latency_ms >= 400


async def test_repeats_count_flaky_scenarios(pod_factory: PodFactory) -> None:
    # The tool endpoint fails its first call only: the first run of the scenario fails, the others pass.
    async with ToolServer(fail_first=1) as server:
        flaky_tool = tool("book_table", server.url("/flaky"), retries=0)
        config = synthetic_config(tools=[flaky_tool], **merge(scripted([BOOK_RULE]), fast_voice()))
        pod = await pod_factory(config)
        suite = load_suite_text(
            """
suite: flaky
defaults: {repeat: 3}
scenarios:
  - name: books
    turns: [{type: book a table, expect: [{contains: confirmation OK-FLAKY}]}]
  - name: greets
    repeat: 2
    turns: [{type: hello, expect: [{contains: hello}]}]
""",
            "flaky.yaml",
        )
        target = EvalTarget(address=pod.grpc_address, description="test pod")
        report = await run_evals([suite], target, RunOptions(parallel=1))
    books, greets = report.outcomes
    assert [r.passed for r in books.runs] == [False, True, True]
    assert (books.passed, books.flaky, round(books.flake_rate, 3), books.passed_runs) == (
        False,
        True,
        0.333,
        2,
    )
    assert "could not complete" in (books.first_failure or "")
    assert (greets.passed, greets.flaky, len(greets.runs)) == (True, False, 2)


async def test_the_options_override_and_filter_scenarios(pod_factory: PodFactory) -> None:
    pod = await pod_factory(synthetic_config(**fast_voice()))
    suite = load_suite_text(
        """
suite: filters
scenarios:
  - {name: a, category: safety, tags: [x], turns: [{type: hello}]}
  - {name: b, category: safety, tags: [y], turns: [{type: hello}]}
  - {name: c, category: booking, tags: [x], turns: [{type: hello}]}
""",
        "filters.yaml",
    )
    target = EvalTarget(address=pod.grpc_address, description="test pod")
    report = await run_evals([suite], target, RunOptions(categories=["safety"], tags=["x"], repeat=2))
    assert [(o.scenario, len(o.runs)) for o in report.outcomes] == [("a", 2)]
    assert report.categories["safety"].total == 1


async def test_audio_calls_go_through_vad_and_speech_recognition(pod_factory: PodFactory) -> None:
    pod = await pod_factory(offline_config())
    suite = load_suite_text(
        """
suite: audio
defaults: {mode: audio, turn_timeout_ms: 15000}
scenarios:
  - name: greeting-and-a-typed-turn
    turns:
      - say: hello
        expect: [{contains: how can I help}]
      - type: what is the weather like
        expect: [{contains: "you said: what is the weather like"}]
  - name: spoken-barge-in
    turns:
      - say: tell me a story
        barge_in: {after_ms: 800, say: hello hello hello}
        expect: [{interrupted: true}, {contains: how can I help}]
""",
        "audio.yaml",
    )
    target = EvalTarget(address=pod.grpc_address, description="offline pod")
    report = await run_evals([suite], target)
    greeting, barge = report.outcomes
    assert greeting.passed, greeting.first_failure
    spoken, typed = greeting.runs[0].record.turns
    assert (spoken.typed, typed.typed) == (False, True)
    assert "hello" in spoken.heard  # pocketsphinx heard the espeak-ng speech
    assert barge.passed, barge.first_failure
    first = barge.runs[0].record.turns[0].answers[0]
    assert "story" in first.heard and first.interrupted


def test_scenario_metadata_goes_out_with_the_start_of_the_call() -> None:
    suite = load_suite_text(
        "suite: m\nscenarios: [{name: a, metadata: {caller_tier: gold}, turns: [{type: hi}]}]\n", "m.yaml"
    )
    [scenario] = suite.scenarios
    call = ScenarioCall(scenario, suite.settings(scenario), "127.0.0.1:1")
    assert dict(call.caller._start_message().start.metadata) == {"caller_tier": "gold"}
