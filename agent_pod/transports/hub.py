"""The live sessions of one pod, shared by every transport.

A transport hands the hub an admitted caller and a ``Sink`` (how it sends to
that caller). The hub runs the pod's single playout loop: on every 20 ms tick of
the shared ``PlayoutClock`` it pulls one frame from every live session and gives
it to the session's sink, so the pod wakes once per tick however many sessions
it serves. Session events are forwarded to the sink by one task per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from ..config import AgentConfig
from ..context.persistence import caller_memory
from ..conversation import Conversation
from ..pipeline.events import SessionEnded, SessionEvent
from ..pipeline.recorder import PipelineRecorder
from ..pipeline.session import AgentSession
from ..providers.base import Providers
from ..records.audit import CallAudit
from ..records.call_audits import CallAudits
from ..records.storage import RecordingStore
from ..sessions.directory import Admission, AdmissionError, SessionDirectory
from ..sessions.gate import SessionGate
from ..tools.platform import ToolPlatform
from ..transfer.mover import Transfers
from . import transport_metrics
from .migration import Migrator, take_over
from .playout_clock import PlayoutClock

log = logging.getLogger(__name__)

DRAINING_MESSAGE = (
    "pod is draining: it takes no new sessions; create or resume the session again to be placed elsewhere"
)


class Sink(Protocol):
    """How a transport delivers to its caller. Every method is called on the event loop and must not block."""

    def on_audio(self, frame: bytes | None) -> None:
        """One playout tick: a 20 ms PCM16 frame at the output rate, or None while the agent is silent."""
        ...

    def on_event(self, event: SessionEvent) -> None: ...

    def on_end(self, reason: str) -> None:
        """The session ended (after its SessionEnded event); the transport hangs up."""
        ...


class LiveSession:
    """One admitted caller: its pipeline session and the sink it is delivered through."""

    def __init__(
        self, hub: SessionHub, transport: str, session: AgentSession, sink: Sink, resumed: bool
    ) -> None:
        self.hub = hub
        self.transport = transport
        self.session = session
        self.sink = sink
        self.resumed = resumed
        self.resume_token: str | None = None
        self.restored_turns = session.conversation.turns if resumed else 0
        self.finished = asyncio.Event()
        self.end_reason = ""
        self.sent_ahead = False  # this tick's frame already went out with the turn's first frame
        self._closing: asyncio.Task[None] | None = None
        # While a MigrationOffer is out: resolved with whether the caller followed it.
        self.migration: asyncio.Future[bool] | None = None
        self.moved_from: str | None = None  # this stream took the call over from that pod
        self.accepts_migration = False  # the caller said it follows MigrationOffers
        self.audit: CallAudit | None = None  # the call leg's audit log (docs/audit.md)

    def report_migration(self, followed: bool) -> bool:
        """The caller's answer to a MigrationOffer; False when no offer is out (the report is refused)."""
        answer = self.migration
        if answer is None or answer.done():
            return False
        answer.set_result(followed)
        return True

    @property
    def id(self) -> str:
        return self.session.session_id

    async def close(self, reason: str) -> None:
        """End the session (idempotent) and wait until it is released."""
        if not self.session.ended:
            await self.session.close(reason)
        await self.finished.wait()

    async def end_by_caller(self) -> bool:
        """The caller hangs up; True when the call was ended here. While the call is handed over the end
        is held (False): the pod that hears the caller's input ends it."""
        if self.session.hold_end():
            return False
        await self.close("client_ended")
        return True

    def request_close(self, reason: str) -> None:
        """Close from synchronous code (a sink that gave up on its caller)."""
        if self._closing is None and not self.finished.is_set():
            self._closing = asyncio.get_running_loop().create_task(self.close(reason))


# A stalled loop (a collector pause, a slow callback) makes the clock jump; up to this many
# missed ticks are made good at once so agent audio keeps to real time (the caller's jitter
# buffer absorbs the burst). A longer stall is lost time: bursting seconds of audio would
# overflow jitter buffers, so the agent's speech is delayed instead.
MAX_CATCH_UP_TICKS = 5


def ticks_due(last: int | None, index: int) -> tuple[int, int]:
    """Frames to hand each session on this tick, and ticks given up as lost."""
    if last is None:
        return 1, 0
    elapsed = max(1, index - last)
    due = min(elapsed, MAX_CATCH_UP_TICKS)
    return due, elapsed - due


class SessionHub:
    def __init__(
        self,
        *,
        config: AgentConfig,
        providers: Providers,
        directory: SessionDirectory,
        gate: SessionGate,
        clock: PlayoutClock,
        pod_name: str = "",
        recorder: PipelineRecorder | None = None,
        tool_platform: ToolPlatform | None = None,
        audits: CallAudits | None = None,
        recordings: RecordingStore | None = None,
    ) -> None:
        self.config = config
        self.audits = audits
        self.recordings = recordings  # where calls are recorded (spec.recording); None: not recorded
        self.tool_platform = tool_platform or ToolPlatform()
        self.recorder = recorder or PipelineRecorder()
        self.gate = gate
        self.pod_name = pod_name
        self.providers = providers
        self.directory = directory
        self.caller_memory = caller_memory(config.memory.persistence, directory)  # None: not kept
        self.clock = clock
        self.draining = False
        self._live: dict[str, LiveSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._playout: asyncio.Task[None] | None = None
        self.transfers = Transfers(config, directory, providers, pod_name)

    @property
    def live_sessions(self) -> int:
        return len(self._live)

    def live(self) -> list[LiveSession]:
        return list(self._live.values())

    def find(self, session_id: str) -> LiveSession | None:
        return self._live.get(session_id)

    async def start(self) -> None:
        self._playout = asyncio.get_running_loop().create_task(self._playout_loop(), name="playout")

    async def open(
        self,
        *,
        transport: str,
        session_id: str | None,
        resume_token: str | None,
        output_sample_rate: int,
        sink: Sink,
        migration_token: str | None = None,
        accepts_migration: bool = False,
        credential: str | None = None,
        roaming: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> LiveSession:
        """Admit a caller and start its session, or raise AdmissionError. A new session (no
        ``session_id``) needs the ``credential`` a create needs; an existing one its resume token, or
        with ``migration_token`` the caller follows a call another pod moves here: its input is heard
        once the old pod's is replayed. ``metadata``: a new session's (an existing one keeps its own)."""
        try:
            if self.draining:
                raise AdmissionError("unavailable", DRAINING_MESSAGE, retry_after_seconds=1.0)
            admission = await self._admit(session_id, resume_token, migration_token, credential, roaming)
            if metadata and admission.conversation is None:  # a new session: its metadata is the caller's
                conversation = Conversation(session_id=admission.session_id, prompt_id="", metadata=metadata)
                admission = admission.model_copy(update={"conversation": conversation})
        except AdmissionError as exc:
            transport_metrics.ADMISSIONS_REFUSED_TOTAL.labels(transport, exc.code).inc()
            raise
        session = AgentSession(
            session_id=admission.session_id,
            config=self.config,
            providers=self.providers,
            output_sample_rate=output_sample_rate,
            conversation=admission.conversation,
            on_snapshot=self.directory.snapshot,
            recorder=self.recorder,
            caller_memory=self.caller_memory,
            tool_platform=self.tool_platform,
            recordings=self.recordings,
        )
        if admission.moved_from is not None:
            session.hold_input()  # until the old pod's held input has been replayed
        try:
            await session.start()
        except BaseException:
            await self.directory.release(admission.session_id, "error")
            raise
        live = LiveSession(self, transport, session, sink, resumed=admission.resumed)
        live.resume_token = admission.resume_token
        live.moved_from = admission.moved_from
        live.accepts_migration = accepts_migration
        self.transfers.attach(live)
        if self.audits is not None:
            live.audit = self.audits.attach(live)
        session.first_frame_ready = functools.partial(self._send_ahead, live)
        self._live[live.id] = live
        transport_metrics.SESSIONS_ACTIVE.labels(transport).inc()
        self._spawn(self._forward_events(live), f"events-{live.id}")
        if admission.moved_from is not None:
            take = take_over(self.directory, admission, session, self.config.session.migration)
            self._spawn(take, f"take-over-{live.id}")
        log.info(
            "session started",
            extra={"session_id": live.id, "transport": transport, "resumed": admission.resumed},
        )
        return live

    async def _admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        migration_token: str | None,
        credential: str | None,
        roaming: bool,
    ) -> Admission:
        """The directory's admission, counted against the session's tenant."""
        new = not session_id and not migration_token
        principal = await self.gate.new_stream(credential) if new else None
        admission = await self.directory.admit(
            session_id or None, resume_token or None, self.config.prompt_id, migration_token or None, roaming
        )
        try:
            await self.gate.stream_admitted(admission.session_id, principal)
        except AdmissionError:
            await self.directory.release(admission.session_id, "refused")
            raise
        return admission

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_events(self, live: LiveSession) -> None:
        reason = "error"
        try:
            async for event in live.session.events():
                live.sink.on_event(event)
                if isinstance(event, SessionEnded):
                    reason = event.reason
                    break
        except Exception:
            log.exception("session event stream failed", extra={"session_id": live.id})
            with contextlib.suppress(Exception):
                await live.session.close("error")
        finally:
            await self._finish(live, live.session.end_reason or reason)

    async def _finish(self, live: LiveSession, reason: str) -> None:
        live.end_reason = reason
        if self._live.get(live.id) is live:
            del self._live[live.id]
        transport_metrics.SESSIONS_ACTIVE.labels(live.transport).dec()
        transport_metrics.SESSIONS_TOTAL.labels(live.transport, reason).inc()
        outcome = "transport_lost" if reason == "disconnected" else reason
        try:
            # A caller that vanished may come back: the directory keeps such a session resumable.
            await self.directory.release(live.id, outcome)
            await self.gate.stream_ended(live.id, outcome)
        except Exception:
            log.exception("releasing the session failed", extra={"session_id": live.id})
        live.sink.on_end(reason)
        if live.audit is not None:
            try:
                await CallAudits.finish(live.audit, live, reason)
            except Exception:
                log.exception("closing the audit log failed", extra={"session_id": live.id})
        live.finished.set()
        log.info(
            "session ended", extra={"session_id": live.id, "transport": live.transport, "reason": reason}
        )

    def _send_ahead(self, live: LiveSession) -> None:
        """A turn's first frame goes out the moment it exists rather than on the next tick (up to
        20 ms sooner, 10 ms on average); the session then sits that tick out, so it still gets one
        frame per tick and the rest of the turn keeps the pod's cadence. (A turn that starts within
        the same tick as an interrupted one also goes at once: one frame early beats one tick late.)"""
        if live.session.ended:
            return
        frame = live.session.pull_audio()
        if frame is None:
            return
        live.sent_ahead = True
        try:
            live.sink.on_audio(frame)
        except Exception:
            log.exception("playout failed", extra={"session_id": live.id})
            live.request_close("error")

    async def _playout_loop(self) -> None:
        observe = transport_metrics.PLAYOUT_FANOUT_SECONDS.observe
        last: int | None = None
        while True:
            index = await self.clock.tick()
            started = time.perf_counter()
            due, lost = ticks_due(last, index)
            last = index
            if due > 1:
                transport_metrics.PLAYOUT_MISSED_TICKS_TOTAL.labels("caught_up").inc(due - 1)
            if lost:
                transport_metrics.PLAYOUT_MISSED_TICKS_TOTAL.labels("lost").inc(lost)
            for live in self._live.values():
                session = live.session
                frames = due
                if live.sent_ahead:
                    live.sent_ahead = False
                    frames -= 1
                try:
                    for _ in range(frames):
                        if session.ended:
                            break
                        live.sink.on_audio(session.pull_audio())
                except Exception:
                    log.exception("playout failed", extra={"session_id": live.id})
                    live.request_close("error")
            observe(time.perf_counter() - started)

    async def drain(self, timeout_seconds: float) -> None:
        """Refuse new sessions, move the live ones to other pods (when migration is on) or serve them
        until they end or the deadline, then close the rest."""
        self.draining = self.transfers.draining = True
        await self.directory.drain()
        log.info("draining", extra={"live_sessions": self.live_sessions, "timeout_seconds": timeout_seconds})
        deadline = time.monotonic() + timeout_seconds
        migration = self.config.session.migration
        if migration.enabled:
            migrator = Migrator(self.directory, migration, self.pod_name)
            movable = [live for live in self.live() if live.accepts_migration]
            self._spawn(migrator.move_all(movable), "migrate")
        while self._live and time.monotonic() < deadline:
            waits = [asyncio.ensure_future(live.finished.wait()) for live in self._live.values()]
            _, pending = await asyncio.wait(
                waits, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        if self._live:
            log.info("drain deadline reached", extra={"live_sessions": self.live_sessions})
            await asyncio.gather(*(live.close("drain_deadline") for live in self.live()))

    async def aclose(self) -> None:
        await asyncio.gather(*(live.close("shutdown") for live in self.live()))
        if self._playout is not None:
            self._playout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._playout
