"""What the live-call runtime needs from the session layer.

The transports ask the directory to admit a stream (check the resume token,
pin the session to this pod, restore its conversation), hand it a snapshot
after every turn, and release it at the end. The session API (HTTP and gRPC
``SessionService``) asks it to create a session (place it on a pod of the
fleet) or to resume one. The Redis-backed directory implements this for a
fleet; ``LocalDirectory`` serves a single pod without Redis (the offline default).

Lifecycle, as the runtime drives it: ``await start()`` once before serving,
``admit`` / ``snapshot`` / ``release`` per stream, ``await drain()`` on SIGTERM
(the pod leaves placement at once and refuses new sessions; live ones go on),
``await aclose()`` at exit.

A non-empty session id must come with its resume token: nobody joins a call by
knowing (or guessing) its id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..config import Model
from ..conversation import Conversation
from .records import Handoff, PodRecord
from .tokens import ResumeTokens, TokenError, valid_session_id

DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600.0
DEFAULT_RESUME_WINDOW_SECONDS = 120.0
# Outcomes after which the caller may come back: its connection dropped, or the pod's drain
# deadline cut the call (a resume then continues it on another pod, history included).
RESUMABLE_OUTCOMES = frozenset({"transport_lost", "drain_deadline"})
DEFAULT_RESERVATION_SECONDS = 15.0
# A call that never completed a turn holds its slot only this long once its caller is gone:
# streams opened and dropped at once must not pin a pod's capacity for the whole resume window.
UNUSED_HOLD_SECONDS = 10.0
FULL_RETRY_SECONDS = 2.0


def has_turns(conversation: Conversation | None) -> bool:
    """A conversation to resume (a new session's first snapshot holds only its caller context)."""
    return conversation is not None and conversation.turns > 0


def detached_hold_seconds(conversation: Conversation | None, resume_window_seconds: float) -> float:
    """How long a session whose caller is gone stays resumable (and holds its slot)."""
    if has_turns(conversation):
        return resume_window_seconds
    return min(resume_window_seconds, UNUSED_HOLD_SECONDS)


def full_retry_after(holds: Iterable[float | None]) -> float:
    """Retry-After for a full pod: when its first held (not live) slot runs out, if any does soon.
    ``holds``: the monotonic deadline of each session's hold (None: a live call, held until it ends)."""
    deadlines = [until for until in holds if until is not None]
    if not deadlines:
        return FULL_RETRY_SECONDS
    return min(max(1.0, min(deadlines) - time.monotonic()), 30.0)


class AdmissionError(Exception):
    """A stream or an API call is refused.

    ``code`` is one of: unauthenticated (401 / UNAUTHENTICATED), unavailable (503 /
    UNAVAILABLE, with ``retry_after_seconds``), wrong_pod (the session lives on
    another pod: ``grpc_address`` tells where), not_found (404), invalid_argument (400).
    """

    def __init__(
        self,
        code: str,
        message: str,
        retry_after_seconds: float | None = None,
        grpc_address: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_seconds = retry_after_seconds
        self.grpc_address = grpc_address


class Admission(Model):
    session_id: str
    resumed: bool = False
    conversation: Conversation | None = None
    # Issued when the stream started a brand-new session (empty session id): the
    # caller needs it to resume later.
    resume_token: str | None = None
    # The stream takes over a call another pod is moving here: that pod, and when it stopped
    # listening (its wall clock, ms). Caller input it held comes as a Handoff.
    moved_from: str | None = None
    frozen_unix_ms: int = 0


class MigrationRefused(Exception):
    """A call cannot be moved now. ``reason``: no_target (no other ready pod with room),
    store_down (Redis unreachable), store_busy (no Redis connection free in time), not_owner (the call
    is not this pod's any more), no_fleet (the pod serves alone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransferRefused(Exception):
    """A call cannot be transferred to another agent; it goes on where it is. ``reason`` (the outcome
    label): not_enabled, same_agent, not_allowed, unknown_target, no_ready_pod, store_down, no_fleet,
    not_owner, busy, already_there."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CallKey(Model):
    """What a phone call's own id (an AudioSocket UUID) names: its session and the resume token."""

    session_id: str
    resume_token: str


def audiosocket_call_key(call: uuid.UUID) -> str:
    """The fleet's name for the call an AudioSocket UUID names."""
    return f"audiosocket:{call}"


class MigrationTicket(Model):
    """Where a moving call goes, and the one-time token its caller follows with."""

    pod: str
    grpc_address: str
    webrtc_url: str
    revision: str = ""
    token: str


class PodIdentity(Model):
    """How callers reach this pod."""

    name: str
    grpc_address: str = ""
    http_url: str = ""
    revision: str = ""

    def webrtc_url(self, session_id: str) -> str:
        return f"{self.http_url}/v1/sessions/{session_id}/webrtc" if self.http_url else ""


class Grant(Model):
    """Answer of the session API (mirrors voicefleet.v1.SessionGrant)."""

    session_id: str
    resume_token: str
    pod: str
    grpc_address: str
    webrtc_url: str
    resumed: bool = False
    token_expires_unix: int


class SessionDirectory(Protocol):
    """Used by the transports and the runtime."""

    draining: bool

    @property
    def live_sessions(self) -> int:
        """Streams this pod serves right now."""
        ...

    async def start(self) -> None:
        """Register with the fleet and start background work; call once before serving."""
        ...

    async def admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        prompt_id: str,
        migration_token: str | None = None,
        roaming: bool = False,
    ) -> Admission:
        """Admit a stream on this pod, or raise AdmissionError. An empty session_id starts a new session;
        ``migration_token`` (instead of the resume token) follows a call another pod moves here;
        ``roaming``: the caller cannot be sent to another pod (AudioSocket), so a session no stream
        holds comes here even while the pod that holds it is alive."""
        ...

    async def snapshot(self, conversation: Conversation) -> None:
        """Persist the conversation after a turn (queued while the store is down)."""
        ...

    async def release(self, session_id: str, outcome: str) -> None:
        """The session ended on this pod (outcome: completed, client_end, idle, max_duration, error, ...).

        ``transport_lost`` and ``drain_deadline`` keep the session resumable for a while."""
        ...

    async def drain(self) -> None:
        """Leave placement at once and refuse new sessions; live sessions go on."""
        ...

    async def aclose(self) -> None:
        """Deregister and stop background work."""
        ...

    async def begin_migration(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        cross_revision: bool,
        exclude: set[str],
        follow_seconds: float,
    ) -> MigrationTicket:
        """Persist the call and move its pin to another pod; raise MigrationRefused."""
        ...

    async def abort_migration(self, session_id: str, target: str, force: bool = False) -> bool:
        """The caller did not follow: take the call back from ``target`` (False: the call lives on
        another pod already; ``force``: the caller said it stayed, take it back anyway)."""
        ...

    async def push_handoff(self, session_id: str, handoff: Handoff) -> None:
        """Caller input held since the freeze, for the pod the call moved to."""
        ...

    async def take_handoff(self, session_id: str, from_pod: str, within: float) -> Handoff | None:
        """On the new pod: the handoff of ``from_pod``, waiting up to ``within`` seconds (less when that
        pod is gone)."""
        ...

    async def check_transfer_target(self, agent: str) -> None:
        """Raise TransferRefused unless VoiceAgent ``agent`` has a ready pod in this session store."""
        ...

    async def call_owner(self, session_id: str) -> PodRecord | None:
        """The live pod that serves the call (None: unknown)."""
        ...

    async def remember_call_key(self, key: str, call: CallKey, ttl_seconds: float) -> None:
        """Let every pod find the session a phone call's own id names (a PBX reconnecting elsewhere)."""
        ...

    async def recall_call_key(self, key: str) -> CallKey | None:
        """The session ``key`` names, if some pod remembered it and it has not expired."""
        ...

    async def forget_call_key(self, key: str) -> None: ...

    async def begin_transfer(
        self, session_id: str, conversation: Conversation, agent: str, follow_seconds: float
    ) -> MigrationTicket:
        """Place the call on a pod of ``agent`` with ``conversation``; raise TransferRefused."""
        ...

    async def abort_transfer(self, session_id: str, agent: str, pod: str, force: bool) -> bool:
        """The caller did not follow a transfer: take the call back (False: the target serves it)."""
        ...

    async def push_transfer_handoff(self, session_id: str, agent: str, handoff: Handoff) -> None:
        """Caller input held since the freeze, for the target agent's pod."""
        ...


class SessionAllocator(Protocol):
    """Used by the session API (HTTP routes and gRPC SessionService)."""

    async def create(self, metadata: dict[str, str], session_id: str | None = None) -> Grant:
        """Place a new session (``session_id``: chosen by the caller, else a fresh one) on a pod of the
        fleet; raise AdmissionError when none can take it."""
        ...

    async def resume(self, session_id: str, resume_token: str | None) -> Grant:
        """The pod that owns the session now (re-placed when its pod is gone)."""
        ...


def new_session_id() -> str:
    return uuid.uuid4().hex


def check_session_id(session_id: str) -> None:
    if not valid_session_id(session_id):
        raise AdmissionError("invalid_argument", "session id must be 1-128 characters of [A-Za-z0-9_-]")


def verify_token(tokens: ResumeTokens, session_id: str, resume_token: str | None) -> int:
    """The token's expiry, or AdmissionError(unauthenticated)."""
    try:
        return tokens.verify(session_id, resume_token)
    except TokenError as exc:
        raise AdmissionError("unauthenticated", str(exc)) from exc


@dataclass
class _LocalSession:
    token: str
    expires_unix: int
    conversation: Conversation | None = None
    live: bool = False
    until: float | None = None  # monotonic deadline of a reserved (created) or detached session


class LocalDirectory:
    """Single-pod directory without Redis: sessions live in memory for the pod's lifetime.

    Tokens are signed with ``tokens`` (an ephemeral key when none is given, enough for one pod).
    ``capacity`` bounds live plus reserved sessions (None: unbounded).
    """

    def __init__(
        self,
        identity: PodIdentity | None = None,
        tokens: ResumeTokens | None = None,
        capacity: int | None = None,
        resume_window_seconds: float = DEFAULT_RESUME_WINDOW_SECONDS,
        reservation_seconds: float = DEFAULT_RESERVATION_SECONDS,
    ) -> None:
        self.identity = identity or PodIdentity(name="local")
        self.reservation_seconds = reservation_seconds
        self.tokens = tokens or ResumeTokens.ephemeral(DEFAULT_TOKEN_TTL_SECONDS)
        self.capacity = capacity
        self.resume_window_seconds = resume_window_seconds
        self._sessions: dict[str, _LocalSession] = {}
        self.draining = False

    @property
    def live_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.live)

    async def start(self) -> None:
        return None

    def _expire_detached(self) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in self._sessions.items() if s.until is not None and s.until < now]:
            del self._sessions[sid]

    def _new_session(self, live: bool, session_id: str | None = None) -> tuple[str, _LocalSession]:
        self._expire_detached()
        if self.draining:
            raise AdmissionError("unavailable", "pod is draining; start the session on another pod", 1.0)
        if self.capacity is not None and len(self._sessions) >= self.capacity:
            retry = full_retry_after(s.until for s in self._sessions.values())
            raise AdmissionError("unavailable", f"pod is at capacity ({self.capacity} sessions)", retry)
        session_id = session_id or new_session_id()
        issued = self.tokens.issue(session_id)
        until = None if live else time.monotonic() + self.reservation_seconds
        session = _LocalSession(token=issued.token, expires_unix=issued.expires_unix, live=live, until=until)
        self._sessions[session_id] = session
        return session_id, session

    def _known(self, session_id: str, resume_token: str | None) -> _LocalSession:
        check_session_id(session_id)
        verify_token(self.tokens, session_id, resume_token)
        self._expire_detached()
        session = self._sessions.get(session_id)
        if session is None:
            raise AdmissionError("not_found", "session is unknown to this pod (ended, or the pod restarted)")
        return session

    def _grant(self, session_id: str, session: _LocalSession, resumed: bool) -> Grant:
        return Grant(
            session_id=session_id,
            resume_token=session.token,
            pod=self.identity.name,
            grpc_address=self.identity.grpc_address,
            webrtc_url=self.identity.webrtc_url(session_id),
            resumed=resumed,
            token_expires_unix=session.expires_unix,
        )

    async def create(self, metadata: dict[str, str], session_id: str | None = None) -> Grant:
        session_id, session = self._new_session(live=False, session_id=session_id)
        if metadata:  # the pipeline sets the prompt id when the stream starts
            session.conversation = Conversation(session_id=session_id, prompt_id="", metadata=metadata)
        return self._grant(session_id, session, resumed=False)

    async def resume(self, session_id: str, resume_token: str | None) -> Grant:
        session = self._known(session_id, resume_token)
        return self._grant(session_id, session, resumed=has_turns(session.conversation))

    async def admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        prompt_id: str,
        migration_token: str | None = None,
        roaming: bool = False,  # one pod: every session is here
    ) -> Admission:
        if migration_token:
            raise AdmissionError("unauthenticated", "this pod serves alone: no call is moving here")
        if not session_id:
            new_id, new = self._new_session(live=True)
            return Admission(session_id=new_id, resume_token=new.token)
        session = self._known(session_id, resume_token)
        if session.live:
            raise AdmissionError("unavailable", "session is already connected on this pod", 1.0)
        session.live, session.until = True, None
        conversation = session.conversation
        return Admission(session_id=session_id, resumed=has_turns(conversation), conversation=conversation)

    async def snapshot(self, conversation: Conversation) -> None:
        session = self._sessions.get(conversation.session_id)
        if session is not None:
            session.conversation = conversation

    async def release(self, session_id: str, outcome: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        if outcome in RESUMABLE_OUTCOMES:
            hold = detached_hold_seconds(session.conversation, self.resume_window_seconds)
            session.live, session.until = False, time.monotonic() + hold
        else:
            del self._sessions[session_id]

    async def drain(self) -> None:
        self.draining = True

    async def aclose(self) -> None:
        self._sessions.clear()

    async def begin_migration(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        cross_revision: bool,
        exclude: set[str],
        follow_seconds: float,
    ) -> MigrationTicket:
        raise MigrationRefused("no_fleet")  # a pod without a fleet has nowhere to move calls

    async def abort_migration(self, session_id: str, target: str, force: bool = False) -> bool:
        return True

    async def push_handoff(self, session_id: str, handoff: Handoff) -> None:
        return None

    async def take_handoff(self, session_id: str, from_pod: str, within: float) -> Handoff | None:
        return None

    async def check_transfer_target(self, agent: str) -> None:
        raise TransferRefused("no_fleet", "this pod serves alone: transfers need the fleet's Redis")

    async def call_owner(self, session_id: str) -> PodRecord | None:
        return None

    # A pod serving alone keeps its call keys itself (whoever asks reaches this pod).
    async def remember_call_key(self, key: str, call: CallKey, ttl_seconds: float) -> None:
        return None

    async def recall_call_key(self, key: str) -> CallKey | None:
        return None

    async def forget_call_key(self, key: str) -> None:
        return None

    async def begin_transfer(
        self, session_id: str, conversation: Conversation, agent: str, follow_seconds: float
    ) -> MigrationTicket:
        raise TransferRefused("no_fleet", "this pod serves alone: transfers need the fleet's Redis")

    async def abort_transfer(self, session_id: str, agent: str, pod: str, force: bool) -> bool:
        return True

    async def push_transfer_handoff(self, session_id: str, agent: str, handoff: Handoff) -> None:
        return None
