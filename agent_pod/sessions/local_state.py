"""What a pod knows about its own sessions, kept in memory so a Redis outage never loses it.

The sessions it owns (with their latest conversation), the slots Redis has
reserved on it for sessions whose callers have not arrived yet (placed by any pod
of the fleet; learnt from placement answers and heartbeats, so local admission
during an outage never books them twice), the snapshots not yet
written to Redis (latest per session, oldest dropped first when the queue is
full) and the sessions that ended while Redis was down (their keys are deleted
on recovery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ..conversation import Conversation
from . import session_metrics
from .records import PinState
from .tuning import DirectoryTuning, ms

log = logging.getLogger("voicefleet.sessions")


@dataclass
class Owned:
    """A session this pod owns."""

    token_hash: str
    prompt_id: str
    state: PinState
    conversation: Conversation | None = None
    until: float | None = None  # monotonic deadline of a reserved or detached session
    version: int = 0
    written: int = 0
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    warned_moved: bool = False


def settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def resolve(owned: Owned, ok: bool, upto: int | None = None) -> None:
    """Wake the snapshot waiters of ``owned`` (on success only those at or below version ``upto``)."""
    keep: list[tuple[int, asyncio.Future[None]]] = []
    for version, fut in owned.waiters:
        if ok and upto is not None and version > upto:
            keep.append((version, fut))
        else:
            settle(fut)
    owned.waiters = keep


class LocalSessions:
    def __init__(self, tuning: DirectoryTuning) -> None:
        self.tuning = tuning
        self.owned: dict[str, Owned] = {}
        self.generation = 0  # bumped whenever ``owned`` gains or loses a session (re-sync checks it)
        self.dirty: dict[str, None] = {}  # sessions whose latest snapshot is not in Redis yet (ordered)
        self.ended: dict[str, None] = {}  # sessions that ended while Redis was down
        self.held: dict[str, float] = {}  # session -> monotonic end of a slot reserved here in Redis
        self._reported_depth = 0

    @property
    def live(self) -> int:
        return sum(1 for s in self.owned.values() if s.state == "live")

    def get(self, session_id: str) -> Owned | None:
        return self.owned.get(session_id)

    def own(self, session_id: str, owned: Owned) -> None:
        self.owned[session_id] = owned
        self.held.pop(session_id, None)
        self.generation += 1

    def hold(self, session_id: str, seconds: float) -> None:
        self.held[session_id] = time.monotonic() + seconds

    def set_held(self, leases: dict[str, float]) -> None:
        """Redis's view of this pod's slots (session -> seconds left) replaces what was held."""
        now = time.monotonic()
        self.held = {sid: now + left for sid, left in leases.items() if sid not in self.owned}

    def holds(self, session_id: str) -> bool:
        return self.held.get(session_id, 0.0) > time.monotonic()

    def disown(self, session_id: str) -> Owned | None:
        self.generation += 1
        self.dirty.pop(session_id, None)
        return self.owned.pop(session_id, None)

    def has_room(self, capacity: int) -> bool:
        """Room for one more session, counting the slots reserved in Redis as taken."""
        now = time.monotonic()
        self.held = {sid: until for sid, until in self.held.items() if until > now}
        return len(self.owned) + len(self.held) < capacity

    def lease_ms(self, owned: Owned) -> int:
        if owned.until is None:
            return ms(self.tuning.stale_seconds)
        return max(1, ms(owned.until - time.monotonic()))

    def expire(self) -> None:
        """Forget reserved and detached sessions whose time is up."""
        now = time.monotonic()
        for sid in [s for s, o in self.owned.items() if o.until is not None and o.until < now]:
            resolve(self.owned[sid], ok=False)
            self.disown(sid)
        self.report_depth()

    def mark_dirty(self, session_id: str) -> None:
        self.dirty.pop(session_id, None)
        self.dirty[session_id] = None
        while len(self.dirty) > self.tuning.max_pending_snapshots:
            oldest = next(iter(self.dirty))
            del self.dirty[oldest]
            session_metrics.SNAPSHOTS_DROPPED.inc()
            log.warning("snapshot queue full: dropped %s", oldest, extra={"session_id": oldest})
        self.report_depth()

    def requeue_all(self) -> None:
        """Redis may have restarted empty: every owned conversation goes back, latest version."""
        for sid, owned in self.owned.items():
            if owned.conversation is not None:
                self.dirty[sid] = None
        self.report_depth()

    def report_depth(self) -> None:
        depth = len(self.dirty)
        session_metrics.SNAPSHOT_QUEUE_DEPTH.inc(depth - self._reported_depth)
        self._reported_depth = depth

    def close(self) -> None:
        for owned in self.owned.values():
            resolve(owned, ok=False)
        session_metrics.SNAPSHOT_QUEUE_DEPTH.dec(self._reported_depth)
        self._reported_depth = 0
