"""The caller's answer to a proposed sensitive call: a pure classifier, and the decision it leads to."""

from __future__ import annotations

import re
from typing import Literal

from ..conversation import ChatMessage

Answer = Literal["yes", "no", "unclear"]

# Phrases, matched on word boundaries in the lowered text without punctuation.
_YES = (
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "correct",
    "right",
    "that's right",
    "that is right",
    "go ahead",
    "please do",
    "do it",
    "confirm",
    "confirmed",
    "absolutely",
    "affirmative",
    "ok",
    "okay",
    "sounds good",
    "of course",
)
_NO = (
    "no",
    "nope",
    "nah",
    "don't",
    "do not",
    "dont",
    "cancel",
    "wait",
    "stop",
    "hold on",
    "not yet",
    "never mind",
    "nevermind",
    "negative",
    "wrong",
    "incorrect",
)


def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w'])({alternatives})(?![\w'])")


_YES_RE, _NO_RE = _pattern(_YES), _pattern(_NO)


def classify(text: str) -> Answer:
    """yes / no / unclear. Any refusal word wins over agreement ("yes, wait" is not a yes), and a
    question is never a yes ("is that correct?")."""
    lowered = " ".join(re.sub(r"[^\w'\s?]", " ", text.lower().replace("\u2019", "'")).split())
    if not lowered:
        return "unclear"
    if _NO_RE.search(lowered):
        return "no"
    if _YES_RE.search(lowered) and not lowered.endswith("?"):
        return "yes"
    return "unclear"


def turn_number(turn_id: str) -> int:
    """``turn-7`` -> 7; anything else -> -1 (never after a proposal)."""
    match = re.fullmatch(r"turn-(\d+)", turn_id)
    return int(match.group(1)) if match else -1


def answer_counts(answer_turn_id: str, proposed_turn_id: str) -> bool:
    """Only a caller turn after the proposal can answer it."""
    return turn_number(answer_turn_id) > turn_number(proposed_turn_id)


def question_heard(messages: list[ChatMessage], proposal_call_id: str) -> bool:
    """Did the caller hear anything the agent said after proposing the call (the question)? A caller who
    cut the agent off before it asked cannot have said yes to it."""
    for i, message in enumerate(messages):
        if message.role == "tool" and message.tool_call_id == proposal_call_id:
            return any(m.role == "assistant" and m.content.strip() for m in messages[i + 1 :])
    return False
