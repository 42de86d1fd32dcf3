"""Moving live calls to another pod at a quiet moment (server-initiated migration).

A draining pod hands each live call over instead of waiting for it to end:

1. wait until the call is quiet (neither side speaks, no tool call runs), up to ``quietWaitSeconds``;
2. freeze it: caller input is held from here on, never fed to this pod's pipeline again;
3. in one Redis step, write the conversation and move the pin to a target pod with a one-time token;
4. offer the move to the caller (MigrationOffer on its stream or data channel);
5. the caller opens the call on the target with the token and reports back that it followed; this
   pod then ends its side ("migrated") and hands the input it held to the target, which replays it
   before listening live, so words said during the switch are heard once, by the new pod.

A caller that reports it could not reach the target gets another one; one that does not follow within
``followTimeoutSeconds`` keeps the call here until the drain deadline, as without migration. A call is
never live on two pods: the target admits the caller only with the token, and the old pod takes the
call back only while the target has not (one Lua script decides).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..config import MigrationSpec
from ..pipeline.events import MigrationCompleted, MigrationOffer
from ..pipeline.session import AgentSession
from ..sessions.directory import Admission, MigrationRefused, MigrationTicket, SessionDirectory
from ..sessions.keys import source_of
from ..sessions.records import Handoff
from . import transport_metrics

if TYPE_CHECKING:
    from .hub import LiveSession

log = logging.getLogger(__name__)

QUIET_POLL_SECONDS = 0.02
RETRY_SECONDS = 1.0  # no target / Redis down: look again after this
# WebRTC: caller audio sent just before the "followed" data-channel message may arrive after it.
WEBRTC_SETTLE_SECONDS = 0.06
# The new pod waits this much longer than the caller has to follow for the old pod's held input.
HANDOFF_MARGIN_SECONDS = 2.0


async def _until(event: asyncio.Event, seconds: float, answer: asyncio.Future[bool] | None = None) -> None:
    """Wait for ``event`` (or ``answer``) for at most ``seconds``."""
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait())}
    try:
        everything = {*waits, *([answer] if answer else [])}
        await asyncio.wait(everything, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


async def wait_quiet(call: LiveSession, deadline: float) -> bool:
    """Wait until neither side of the call speaks (False: it ended, or ``deadline`` passed first)."""
    while not call.session.quiet:
        if call.finished.is_set() or time.monotonic() >= deadline:
            return False
        await asyncio.sleep(QUIET_POLL_SECONDS)
    return not call.finished.is_set()


async def offer(call: LiveSession, ticket: MigrationTicket, follow_seconds: float) -> asyncio.Future[bool]:
    """Offer the caller the move to ``ticket`` and wait for its answer (or the call's end) for at most
    ``follow_seconds``; the answer future is resolved only if the caller answered."""
    call.migration = answer = asyncio.get_running_loop().create_future()
    call.session.notify(
        MigrationOffer(
            pod=ticket.pod,
            grpc_address=ticket.grpc_address,
            webrtc_url=ticket.webrtc_url,
            migration_token=ticket.token,
            follow_within_ms=int(follow_seconds * 1000),
        )
    )
    await _until(call.finished, follow_seconds, answer)
    call.migration = None
    return answer


async def hand_over(call: LiveSession, push: Callable[[Handoff], Awaitable[None]], from_pod: str) -> None:
    """The caller followed: give the new pod the input held here, then end this side ("migrated")."""
    if call.transport == "webrtc" and not call.finished.is_set():
        await asyncio.sleep(WEBRTC_SETTLE_SECONDS)
    # The new pod listens once it has this: hand it over first, then end this side.
    await push(Handoff(from_pod=from_pod, inputs=call.session.take_held()))
    if not call.finished.is_set():
        await call.close("migrated")


class Migrator:
    """Moves the live calls of one draining pod, ``maxParallel`` at a time."""

    def __init__(self, directory: SessionDirectory, spec: MigrationSpec, pod_name: str) -> None:
        self.directory = directory
        self.spec = spec
        self.pod_name = pod_name
        self._slots = asyncio.Semaphore(spec.max_parallel)

    async def move_all(self, calls: list[LiveSession]) -> None:
        await asyncio.gather(*(self._move_one(call) for call in calls))

    async def _move_one(self, call: LiveSession) -> None:
        async with self._slots:
            try:
                outcome = await self.move(call)
            except Exception:
                log.exception("migration failed", extra={"session_id": call.id})
                outcome = "error"
        if outcome:
            transport_metrics.MIGRATIONS_TOTAL.labels(outcome).inc()
            log.info("migration: %s", outcome, extra={"session_id": call.id})

    async def move(self, call: LiveSession) -> str:
        """Move one call; the outcome ('' when the call ended on its own first)."""
        spec, session = self.spec, call.session
        deadline = time.monotonic() + spec.quiet_wait_seconds
        exclude: set[str] = set()
        refused = "not_quiet"
        while True:
            if not await wait_quiet(call, deadline):
                return "" if call.finished.is_set() else refused
            session.hold_input()  # synchronously after the quiet check: nothing slips in between
            frozen = time.monotonic()
            try:
                ticket = await self.directory.begin_migration(
                    call.id,
                    session.conversation,
                    cross_revision=spec.cross_revision,
                    exclude=exclude,
                    follow_seconds=spec.follow_timeout_seconds,
                )
            except MigrationRefused as exc:
                session.release_input()
                if exc.reason == "no_fleet":
                    return ""  # a pod that serves alone keeps its calls, as without migration
                if exc.reason == "not_owner":
                    return "not_owner"
                refused = exc.reason
                if time.monotonic() + RETRY_SECONDS >= deadline:
                    return refused
                await _until(call.finished, RETRY_SECONDS)
                continue
            answer = await offer(call, ticket, spec.follow_timeout_seconds)
            followed = answer.done() and answer.result()
            if not followed and not call.finished.is_set():
                # A caller that says it could not follow is still here: the call is taken back even if
                # the new pod admitted a connection that then failed.
                if await self.directory.abort_migration(call.id, ticket.pod, force=answer.done()):
                    session.release_input()
                    if not answer.done():
                        return "not_followed"  # the caller stays here until the drain deadline
                    exclude.add(ticket.pod)  # it could not reach that pod: try another
                    transport_metrics.MIGRATIONS_TOTAL.labels("caller_failed").inc()
                    refused = "caller_failed"
                    continue
                followed = True  # the caller got there although it did not say so
            transport_metrics.MIGRATION_HANDOVER_SECONDS.observe(time.monotonic() - frozen)
            push = functools.partial(self.directory.push_handoff, call.id)
            await hand_over(call, push, self.pod_name)
            return "moved"


async def take_over(
    directory: SessionDirectory, admission: Admission, session: AgentSession, spec: MigrationSpec
) -> None:
    """New pod: wait for the old pod's held input, replay it, then listen live (see ``AgentSession``).
    The wait outlasts the caller's time to follow by a margin; it ends early if the old pod is gone."""
    handoff = await directory.take_handoff(
        session.session_id, admission.moved_from or "", spec.follow_timeout_seconds + HANDOFF_MARGIN_SECONDS
    )
    replayed = session.release_input(handoff.inputs if handoff else None)
    gap = max(0.0, time.time() - admission.frozen_unix_ms / 1000) if admission.frozen_unix_ms else 0.0
    transport_metrics.MIGRATION_GAP_SECONDS.observe(gap)
    from_pod = admission.moved_from or ""
    transfers = session.conversation.transfers
    if (source := source_of(from_pod)) is not None:  # a call from another agent
        from_pod = source[1]
        if transfers:
            decided = transfers[-1].at_unix_ms / 1000
            transport_metrics.TRANSFER_SECONDS.observe(max(0.0, time.time() - decided))
    session.notify(
        MigrationCompleted(
            from_pod=from_pod,
            gap_ms=int(gap * 1000),
            replayed_ms=int(replayed * 1000),
        )
    )
    log.info(
        "call taken over",
        extra={"session_id": session.session_id, "from_pod": admission.moved_from, "gap_ms": int(gap * 1000)},
    )
