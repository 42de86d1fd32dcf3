"""What a transfer may do and what the target agent gets of the call (pure functions)."""

from __future__ import annotations

from ..config import ContextPolicy, TransferSpec
from ..conversation import ChatMessage, Conversation, TransferRecord
from ..sessions.directory import TransferRefused


def check_target(spec: TransferSpec | None, own_agent: str, target: str) -> None:
    """Raise TransferRefused unless ``spec`` lets this agent's calls go to ``target``."""
    if spec is None:
        raise TransferRefused("not_enabled", "transfers are not enabled for this agent (spec.transfer)")
    if target == own_agent:
        raise TransferRefused("same_agent", f"the call already runs on VoiceAgent {target!r}")
    if target not in spec.targets:
        allowed = ", ".join(spec.targets)
        raise TransferRefused(
            "not_allowed", f"target {target!r} is not in spec.transfer.targets (allowed: {allowed})"
        )


def transfer_note(record: TransferRecord) -> str:
    reason = f" Reason: {record.reason}" if record.reason else ""
    return f"This call was transferred to you from the {record.from_agent} agent.{reason}".rstrip()


def handed_over(conversation: Conversation, record: TransferRecord, summary: str | None) -> Conversation:
    """The conversation the target agent starts with: the history (``full``), a summary of it (``summary``;
    ``summary`` None: the summariser failed, so the history goes instead) or nothing (``none``), after a
    note saying where the call comes from. Caller context and the transfer log always go along."""
    note = transfer_note(record)
    policy: ContextPolicy = record.policy
    if policy == "summary" and summary is not None:
        messages = [ChatMessage(role="system", content=f"{note}\nSummary of the call so far: {summary}")]
    elif policy == "none":
        messages = [ChatMessage(role="system", content=note)]
    else:
        messages = [
            *(m.model_copy(deep=True) for m in conversation.messages),
            ChatMessage(role="system", content=note),
        ]
    return conversation.model_copy(
        update={"messages": messages, "transfers": [*conversation.transfers, record]}, deep=True
    )


def failure_note(target: str, why: str) -> str:
    """What the source agent's LLM reads after a transfer that did not happen: the call is still its own."""
    return f"The transfer to {target} did not happen ({why}). The call stays with you."
