"""The pure decisions of a transfer: which targets are allowed, what context the target agent gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, TransferSpec
from agent_pod.conversation import ChatMessage, Conversation, TransferRecord
from agent_pod.sessions.directory import TransferRefused
from agent_pod.sessions.keys import agent_pod_name, source_of
from agent_pod.transfer.policy import check_target, handed_over

SPEC = TransferSpec(targets=["billing", "sales"], context_policy="full")


def record(policy: str) -> TransferRecord:
    return TransferRecord.model_validate(
        {
            "fromAgent": "front",
            "fromPod": "front-0",
            "toAgent": "billing",
            "reason": "invoice",
            "policy": policy,
            "trigger": "tool",
            "atUnixMs": 1,
        }
    )


def conversation() -> Conversation:
    return Conversation(
        session_id="s1",
        prompt_id="p",
        messages=[
            ChatMessage(role="user", content="hi", turn_id="turn-1"),
            ChatMessage(role="assistant", content="hello", turn_id="turn-1"),
        ],
        turns=1,
        metadata={"customer": "42"},
    )


@pytest.mark.parametrize(
    ("spec", "target", "reason", "words"),
    [
        (None, "billing", "not_enabled", "spec.transfer"),
        (SPEC, "front", "same_agent", "already runs"),
        (
            SPEC,
            "support",
            "not_allowed",
            "'support' is not in spec.transfer.targets (allowed: billing, sales)",
        ),
    ],
)
def test_a_target_outside_the_spec_is_refused_with_the_reason(
    spec: TransferSpec | None, target: str, reason: str, words: str
) -> None:
    with pytest.raises(TransferRefused) as refused:
        check_target(spec, "front", target)
    assert refused.value.reason == reason and words in refused.value.message


def test_an_allowed_target_passes() -> None:
    check_target(SPEC, "front", "sales")


def test_full_keeps_the_history_and_adds_where_the_call_comes_from() -> None:
    before = conversation()
    after = handed_over(before, record("full"), None)
    assert [m.content for m in after.messages] == [
        "hi",
        "hello",
        "This call was transferred to you from the front agent. Reason: invoice",
    ]
    assert after.metadata == {"customer": "42"} and after.transfers == [record("full")]
    assert before.transfers == [] and len(before.messages) == 2  # the source's own copy is untouched


def test_summary_replaces_the_history_and_falls_back_to_it_when_there_is_none() -> None:
    after = handed_over(conversation(), record("summary"), "The caller said hi.")
    assert [m.role for m in after.messages] == ["system"]
    assert after.messages[0].content.endswith("Summary of the call so far: The caller said hi.")
    failed = handed_over(conversation(), record("summary"), None)
    assert [m.content for m in failed.messages][:2] == ["hi", "hello"]


def test_none_gives_only_the_note() -> None:
    after = handed_over(conversation(), record("none"), "ignored")
    assert [m.content for m in after.messages] == [
        "This call was transferred to you from the front agent. Reason: invoice"
    ]


def test_a_transfer_source_is_told_apart_from_a_pod_of_the_fleet() -> None:
    assert source_of(agent_pod_name("front", "front-0")) == ("front", "front-0")
    assert source_of("pod-a") is None


def test_the_spec_names_targets_like_kubernetes_names_and_bounds_the_rest() -> None:
    with pytest.raises(ValidationError, match="targets"):
        TransferSpec.model_validate({"targets": ["Billing Desk"]})
    with pytest.raises(ValidationError, match="targets"):
        TransferSpec.model_validate({"targets": []})
    with pytest.raises(ValidationError, match="contextPolicy"):
        TransferSpec.model_validate({"targets": ["billing"], "contextPolicy": "all"})
    config = AgentConfig.model_validate({"transfer": {"targets": ["billing"], "announce": "One moment."}})
    assert config.transfer is not None and config.transfer.context_policy == "summary"
