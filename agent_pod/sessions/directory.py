"""What the live-call runtime needs from the session layer.

The transports ask the directory to admit a stream (check the resume token,
pin the session to this pod, restore its conversation), hand it a snapshot
after every turn, and release it at the end. The Redis-backed directory
implements this for a fleet; ``LocalDirectory`` serves a single pod without
Redis (the offline default).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from ..config import Model
from ..conversation import Conversation


class AdmissionError(Exception):
    """A stream is refused. ``code`` is one of: unauthenticated, unavailable, wrong_pod."""

    def __init__(self, code: str, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_seconds = retry_after_seconds


class Admission(Model):
    session_id: str
    resumed: bool = False
    conversation: Conversation | None = None


class SessionDirectory(Protocol):
    async def admit(self, session_id: str | None, resume_token: str | None, prompt_id: str) -> Admission:
        """Admit a stream on this pod, or raise AdmissionError. An empty session_id starts a new session."""
        ...

    async def snapshot(self, conversation: Conversation) -> None:
        """Persist the conversation after a turn (queued while the store is down)."""
        ...

    async def release(self, session_id: str, outcome: str) -> None:
        """The session ended on this pod (outcome: completed, client_end, idle, max_duration, error, ...)."""
        ...


class LocalDirectory:
    """Single-pod directory without Redis: sessions live in memory for the pod's lifetime."""

    def __init__(self) -> None:
        self._conversations: dict[str, Conversation] = {}
        self.draining = False

    async def admit(self, session_id: str | None, resume_token: str | None, prompt_id: str) -> Admission:
        if self.draining:
            raise AdmissionError("unavailable", "pod is draining", retry_after_seconds=1.0)
        if session_id and session_id in self._conversations:
            return Admission(session_id=session_id, resumed=True, conversation=self._conversations[session_id])
        return Admission(session_id=session_id or uuid.uuid4().hex)

    async def snapshot(self, conversation: Conversation) -> None:
        self._conversations[conversation.session_id] = conversation

    async def release(self, session_id: str, outcome: str) -> None:
        if outcome != "transport_lost":
            self._conversations.pop(session_id, None)
