"""Bounds on what one caller's input can make a session do (spec.session.limits, docs/limits.md).

Pure checks: the session raises ``InputRefused`` from them and the transport reports it to the
caller as a non-fatal error; the call goes on.
"""

from __future__ import annotations

from typing import Literal

# Typed turns waiting behind the one being answered: more are refused, so a caller typing faster than
# the agent answers cannot queue unbounded work.
MAX_QUEUED_TURNS = 3


class InputRefused(ValueError):
    """Caller input the session does not take; ``reason`` labels voicefleet_transport_bad_input_total."""

    def __init__(
        self, reason: str, message: str, code: Literal["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def check_text(text: str, max_chars: int, queued_turns: int) -> None:
    """Raise InputRefused unless a typed turn of ``text`` may be queued."""
    if len(text) > max_chars:
        raise InputRefused(
            "text_size",
            f"text input of {len(text)} characters refused: at most {max_chars} per message",
            "INVALID_ARGUMENT",
        )
    if queued_turns >= MAX_QUEUED_TURNS:
        raise InputRefused(
            "turns_queued",
            f"text input refused: {queued_turns} turns are already waiting for an answer",
            "RESOURCE_EXHAUSTED",
        )
