"""The fleet's session directory, backed by Redis: the facade the rest of the pod uses.

Every pod runs one. It registers the pod (heartbeat every ~2 s, ``registry``),
places new sessions on the fleet and resumes them (``placement_store``), admits
streams that belong here (``admission``), writes a conversation snapshot after
every turn (``snapshots``), moves live calls to other pods (``migration_store``) and
adds the pod's call counts to its revision's totals (``revision_stats_writer``).
All of them call Redis through one ``Store`` (``store``: error handling, circuit,
backoff) and share what the pod knows about its sessions (``local_state``).

Redis is never on the path of a live call: the pod keeps the sessions it owns
in memory. While Redis is unreachable, heartbeats and snapshot writes fail
softly (one probe per backoff step, no call waits on a dead socket), new
sessions are admitted from local knowledge when this pod has room, snapshots
queue (latest per session) and everything is written back on recovery -- also
after a Redis restart that lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..conversation import Conversation
from .admission import StreamAdmission
from .directory import Admission, CallKey, Grant, MigrationTicket, PodIdentity
from .keys import AgentKeys
from .local_state import LocalSessions
from .migration_store import CallMoves
from .placement_store import SessionPlacement
from .records import Handoff, PodRecord
from .redis_client import AnyRedis
from .registry import PodRegistry
from .revision_stats import RevisionTally
from .revision_stats_writer import RevisionStatsWriter
from .snapshots import SnapshotWriter
from .store import Store, StoreBusy, StoreDown
from .tokens import ResumeTokens
from .transfer_store import CallTransfers
from .tuning import DirectoryTuning

__all__ = ["DirectoryTuning", "RedisDirectory"]
log = logging.getLogger("voicefleet.sessions")


class RedisDirectory:
    def __init__(
        self,
        redis_client: AnyRedis,
        keys: AgentKeys,
        identity: PodIdentity,
        capacity: int,
        tokens: ResumeTokens,
        prompt_id: str = "",
        tuning: DirectoryTuning | None = None,
        revision_tally: RevisionTally | None = None,
    ) -> None:
        """``revision_tally``: the counts of this pod's calls (``pipeline.recorder``), written to its
        revision's totals in Redis; None: none are written."""
        self.redis = redis_client
        self.keys = keys
        self.identity = identity
        self.capacity = capacity
        self.tokens = tokens
        self.prompt_id = prompt_id
        self.tuning = tuning or DirectoryTuning()
        self.store = Store(redis_client, keys, self.tuning)
        self.local = LocalSessions(self.tuning)
        self.snapshots = SnapshotWriter(self.store, self.local, identity)
        self.registry = PodRegistry(self.store, self.local, self.snapshots, identity, capacity, prompt_id)
        self.placement = SessionPlacement(
            self.store, self.local, self.registry, identity, capacity, tokens, prompt_id
        )
        self.admission = StreamAdmission(self.placement)
        self.moves = CallMoves(self.store, self.local, self.registry, identity)
        self.transfers = CallTransfers(self.store, self.local, self.registry, identity)
        self.revision_stats = (
            RevisionStatsWriter(self.store, revision_tally, identity.revision)
            if revision_tally is not None
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    # ----- state ---------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self.registry.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.registry.draining = value

    @property
    def live_sessions(self) -> int:
        return self.local.live

    @property
    def store_healthy(self) -> bool:
        return self.store.healthy

    @property
    def pending_snapshots(self) -> int:
        return len(self.local.dirty)

    # ----- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        try:
            await self.registry.heartbeat()
        except StoreDown:
            log.warning("session store unreachable at start; registering when it is back")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.registry.loop(), name="sessions-heartbeat"),
            loop.create_task(self.snapshots.loop(), name="sessions-snapshot-writer"),
        ]
        if self.revision_stats is not None:
            self._tasks.append(loop.create_task(self.revision_stats.loop(), name="revision-stats-writer"))

    async def drain(self) -> None:
        await self.registry.drain()

    async def aclose(self) -> None:
        if self.store.closed:
            return
        # The loops see the flag, write the last snapshots and return. They are not cancelled
        # while waiting on Redis: redis-py (8.x, Python 3.11) can swallow a cancellation there.
        self.store.closed = True
        self.store.wake.set()
        self.snapshots.kick.set()
        if self.revision_stats is not None:
            self.revision_stats.kick.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.tuning.heartbeat_seconds + 2)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        self._tasks = []
        await self.registry.deregister()
        self.local.close()
        await self.redis.aclose()

    async def abandon(self) -> None:
        """Stop as a killed pod would: background work ends, nothing is deregistered or written back
        (tests and benchmarks stand for pod loss with it)."""
        self.store.closed = True
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        await self.redis.aclose()

    # ----- the runtime's calls -----------------------------------------------------

    async def admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        prompt_id: str,
        migration_token: str | None = None,
        roaming: bool = False,
    ) -> Admission:
        return await self.admission.admit(session_id, resume_token, prompt_id, migration_token, roaming)

    async def snapshot(self, conversation: Conversation) -> None:
        await self.snapshots.snapshot(conversation)

    async def release(self, session_id: str, outcome: str) -> None:
        await self.admission.release(session_id, outcome)

    async def begin_migration(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        cross_revision: bool,
        exclude: set[str],
        follow_seconds: float,
    ) -> MigrationTicket:
        return await self.moves.begin(
            session_id,
            conversation,
            cross_revision=cross_revision,
            exclude=exclude,
            follow_seconds=follow_seconds,
        )

    async def abort_migration(self, session_id: str, target: str, force: bool = False) -> bool:
        return await self.moves.abort(session_id, target, force)

    async def push_handoff(self, session_id: str, handoff: Handoff) -> None:
        await self.moves.push_handoff(session_id, handoff)

    async def take_handoff(self, session_id: str, from_pod: str, within: float) -> Handoff | None:
        return await self.moves.take_handoff(session_id, from_pod, within)

    # ----- transfers to another agent (transfer_store) ----------------------------------

    async def check_transfer_target(self, agent: str) -> None:
        await self.transfers.ready_pods(agent)

    async def call_owner(self, session_id: str) -> PodRecord | None:
        return await self.transfers.owner(session_id)

    async def remember_call_key(self, key: str, call: CallKey, ttl_seconds: float) -> None:
        try:
            await self.store.io(
                self.store.redis.set(
                    self.store.keys.call_key(key), call.model_dump_json(), px=max(1, int(ttl_seconds * 1000))
                )
            )
        except (StoreDown, StoreBusy) as exc:  # this pod still knows it; only a reconnect elsewhere misses
            log.warning("call key not stored: %s", exc, extra={"call_key": key})

    async def recall_call_key(self, key: str) -> CallKey | None:
        try:
            raw = await self.store.io(self.store.redis.get(self.store.keys.call_key(key)))
        except (StoreDown, StoreBusy):
            return None
        return CallKey.model_validate_json(raw) if raw else None

    async def forget_call_key(self, key: str) -> None:
        with contextlib.suppress(StoreDown, StoreBusy):
            await self.store.io(self.store.redis.delete(self.store.keys.call_key(key)))

    async def begin_transfer(
        self, session_id: str, conversation: Conversation, agent: str, follow_seconds: float
    ) -> MigrationTicket:
        return await self.transfers.begin(session_id, conversation, agent, follow_seconds)

    async def abort_transfer(self, session_id: str, agent: str, pod: str, force: bool) -> bool:
        return await self.transfers.abort(session_id, agent, pod, force)

    async def push_transfer_handoff(self, session_id: str, agent: str, handoff: Handoff) -> None:
        await self.transfers.push_handoff(session_id, agent, handoff)

    # ----- the session API ---------------------------------------------------------

    async def create(self, metadata: dict[str, str], session_id: str | None = None) -> Grant:
        return await self.placement.create(metadata, session_id)

    async def resume(self, session_id: str, resume_token: str | None) -> Grant:
        return await self.placement.resume(session_id, resume_token)
