"""When to summarise older turns, and how a summary replaces them in the history (pure).

Summaries are made off the hot path (engine.py) once a call's full context is over
``context.targetTokens``, or its history is half way to the storage caps (``maxHistoryTurns`` /
``maxHistoryChars``), so turns are summarised well before ``trim_history`` would drop them unread.
The newest ``keepLastTurns`` caller turns are never summarised (at most half of ``maxHistoryTurns``).
"""

from __future__ import annotations

from ..config import ContextSpec, InputLimitsSpec
from ..conversation import ChatMessage, Conversation, last_turn_number, message_chars
from .assembler import SUMMARY_HEADER, pinned_messages, split_turns
from .blocks import render_blocks
from .tokens import messages_tokens, text_tokens

PREVIOUS_SUMMARY = "Summary of the call before the turns below:"


def full_context_tokens(prompt_text: str, conversation: Conversation) -> int:
    """Tokens of a request that would send everything: pinned part, memory, summary, whole history."""
    extra = 0
    if conversation.memory:
        extra += text_tokens(render_blocks(conversation.memory))
    if conversation.summary:
        extra += text_tokens(f"{SUMMARY_HEADER}\n{conversation.summary}")
    return (
        messages_tokens(pinned_messages(prompt_text, conversation))
        + extra
        + messages_tokens(conversation.messages)
    )


def turns_to_summarize(
    prompt_text: str, conversation: Conversation, spec: ContextSpec, limits: InputLimitsSpec
) -> list[ChatMessage]:
    """The messages to fold into the summary now (oldest first), or [] when the call is within bounds."""
    turns = split_turns(conversation.messages)
    starts = [i for i, turn in enumerate(turns) if turn[0].role == "user"]
    # Storage caps tighter than keepLastTurns win: turns are summarised before trim_history drops them.
    keep = min(spec.keep_last_turns, max(1, limits.max_history_turns // 2))
    if len(starts) <= keep:
        return []
    cut = starts[-keep]
    over = (
        full_context_tokens(prompt_text, conversation) > spec.target_tokens
        or len(starts) > limits.max_history_turns // 2
        or sum(message_chars(m) for m in conversation.messages) > limits.max_history_chars // 2
    )
    return [m for turn in turns[:cut] for m in turn] if over else []


def summary_input(conversation: Conversation, messages: list[ChatMessage]) -> list[ChatMessage]:
    """What the summariser reads: the summary so far (as a note), then the turns it now takes in."""
    if not conversation.summary:
        return messages
    return [ChatMessage(role="system", content=f"{PREVIOUS_SUMMARY} {conversation.summary}"), *messages]


def fold_summary(conversation: Conversation, summarized: list[ChatMessage], text: str) -> None:
    """The summary ``text`` now stands for ``summarized``: they leave the history (which may have grown
    meanwhile; only these message objects go)."""
    gone = {id(m) for m in summarized}
    conversation.messages = [m for m in conversation.messages if id(m) not in gone]
    conversation.summary = text
    conversation.summary_through = max(conversation.summary_through, last_turn_number(summarized))
