"""The speech gate's and the supervisor's pure decisions, and their spec models."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, PipelineSpec, SupervisorSpec, ToolSpeechSpec
from agent_pod.conversation import ChatMessage
from agent_pod.pipeline.speech_gate import SpeechPolicy, holds, preamble_spoken
from agent_pod.pipeline.supervisor import (
    VERDICT_FORMAT,
    deny_match,
    fallback_verdict,
    parse_verdict,
    spoken_for,
    supervisor_messages,
)
from voicefleet_operator.render import credential_refs
from voicefleet_operator.spec import VoiceAgentSpec


def test_only_rounds_offering_tools_are_held_in_hold_mode():
    hold, stream = ToolSpeechSpec(mode="hold"), ToolSpeechSpec(mode="stream")
    assert holds(hold, tools_offered=True)
    assert not holds(hold, tools_offered=False)
    assert not holds(stream, tools_offered=True)


def test_a_preamble_is_dropped_only_before_tool_calls_under_drop():
    drop, speak = ToolSpeechSpec(preamble="drop"), ToolSpeechSpec(preamble="speak")
    assert not preamble_spoken(drop, tool_calls=True)
    assert preamble_spoken(drop, tool_calls=False)
    assert preamble_spoken(speak, tool_calls=True)


def test_fillers_rotate_through_the_list():
    policy = SpeechPolicy(ToolSpeechSpec(fillers=["One moment.", "Still on it."]), None)
    assert [policy.next_filler() for _ in range(3)] == ["One moment.", "Still on it.", "One moment."]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"verdict": "allow"}', ("allow", "")),
        ('```json\n{"verdict": "redirect", "text": "Ask a doctor."}\n```', ("redirect", "Ask a doctor.")),
        ('Sure! {"verdict": "veto", "reason": "advice"}', ("veto", "")),
    ],
)
def test_verdicts_parse_from_the_llms_answer(raw, expected):
    verdict = parse_verdict(raw)
    assert verdict is not None and (verdict.verdict, verdict.text) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "allow",
        "",
        '{"verdict": "maybe"}',
        '{"verdict": "redirect"}',  # a redirect without its text
        '{"verdict": "allow", "confidence": 0.9}',  # unknown fields are refused
        '{"verdict": "allow"',
    ],
)
def test_malformed_verdicts_are_none(raw):
    assert parse_verdict(raw) is None


def test_the_timeout_policy_and_what_replaces_a_draft():
    assert fallback_verdict("allow") == "allow" and fallback_verdict("block") == "veto"
    assert spoken_for("allow", "draft", "", "safe") == "draft"
    assert spoken_for("veto", "draft", "", "safe") == "safe"
    assert spoken_for("veto", "draft", "", "") == ""
    assert spoken_for("redirect", "draft", "other", "safe") == "other"


def test_deny_rules_match_case_insensitively_via_the_supervisor_patterns():
    rules = [re.compile(r"\bssn\b", re.IGNORECASE), re.compile("guarantee", re.IGNORECASE)]
    assert deny_match(rules, "We GUARANTEE it") is rules[1]
    assert deny_match(rules, "Nothing to see") is None


def test_the_supervisor_sees_caller_context_and_the_draft_as_data():
    system, user = supervisor_messages("Be strict.", "caller words", "said before", "the draft")
    assert system == ChatMessage(role="system", content=f"Be strict.\n\n{VERDICT_FORMAT}")
    assert user.role == "user" and '"draft": "the draft"' in user.content and "said before" in user.content


def test_a_bad_deny_rule_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match=r"supervisor\.rules\[1\] is not a valid regular expression"):
        SupervisorSpec.model_validate({"rules": ["ok", "(unclosed"]})


def test_spec_fields_are_camel_case_and_bounded():
    spec = PipelineSpec.model_validate(
        {
            "toolSpeech": {"mode": "hold", "preamble": "drop", "fillerAfterMs": 600, "fillers": ["One sec."]},
            "supervisor": {"budgetMs": 250, "onTimeout": "block", "safeLine": "", "rules": ["x"]},
        }
    )
    assert spec.tool_speech.filler_after_ms == 600 and spec.supervisor is not None
    assert spec.supervisor.on_timeout == "block" and spec.supervisor.llm is None
    for bad in (
        {"toolSpeech": {"fillerAfterMs": 10}},
        {"supervisor": {"budgetMs": 0}},
        {"toolSpeech": {"x": 1}},
    ):
        with pytest.raises(ValidationError):
            PipelineSpec.model_validate(bad)
    # Defaults: hold (the fix), no fillers, no supervisor.
    default = AgentConfig().pipeline
    assert default.tool_speech.mode == "hold" and not default.tool_speech.fillers
    assert default.supervisor is None


def test_the_supervisor_models_key_is_mounted_in_the_pods():
    spec = VoiceAgentSpec.model_validate(
        {
            "pipeline": {
                "supervisor": {
                    "llm": {"provider": "openai", "credentialsSecretRef": {"name": "guard", "key": "api-key"}}
                }
            }
        }
    )
    assert [(r.name, r.key) for r in credential_refs(spec)] == [("guard", "api-key")]
