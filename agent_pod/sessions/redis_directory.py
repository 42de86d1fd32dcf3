"""The fleet's session directory, backed by Redis.

Every pod runs one. It registers the pod (heartbeat every ~2 s), places new
sessions on the fleet (bounded-load consistent hashing, one Lua script), admits
streams that belong here, writes a conversation snapshot after every turn, and
re-places a session whose pod is gone, restoring its conversation.

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
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.exceptions
from pydantic import ValidationError
from redis.asyncio import Redis

from ..conversation import Conversation
from . import session_metrics
from .directory import (
    RESUMABLE_OUTCOMES,
    Admission,
    AdmissionError,
    Grant,
    MigrationRefused,
    MigrationTicket,
    PodIdentity,
    check_session_id,
    new_session_id,
    verify_token,
)
from .keys import AgentKeys
from .placement import is_fresh, ring_order
from .records import Handoff, PinRecord, PinState, PodRecord, decode_mapping
from .scripts import Scripts
from .tokens import ResumeTokens, token_hash

log = logging.getLogger("voicefleet.sessions")
T = TypeVar("T")

# What a dead, restarting or unreachable Redis raises (BusyLoadingError is a ConnectionError).
STORE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
NO_ROOM_RETRY_SECONDS = 2.0
WRITE_BATCH = 256
HANDOFF_TTL_SECONDS = 60.0
BLPOP_STEP_SECONDS = 0.5


class StoreDown(Exception):
    """Redis is unreachable; the caller falls back to local knowledge."""


@dataclass(frozen=True)
class DirectoryTuning:
    epsilon: float = 0.25  # no pod above (1 + epsilon) x average load
    heartbeat_seconds: float = 2.0
    stale_seconds: float = 6.0  # a pod whose heartbeat is older leaves placement
    pod_ttl_seconds: float = 60.0  # a dead pod's entry stays visible (stale) this long
    reservation_seconds: float = 30.0  # a created session holds its slot until the caller connects
    resume_window_seconds: float = 120.0  # a session whose transport was lost stays resumable
    pin_ttl_seconds: float = 300.0
    snapshot_ttl_seconds: float = 3600.0
    probe_timeout_seconds: float = 0.5  # TCP check of a pinned pod on resume
    max_backoff_seconds: float = 2.0
    max_pending_snapshots: int = 10_000


@dataclass
class _Owned:
    """A session this pod owns: kept in memory so an outage never loses it."""

    token_hash: str
    prompt_id: str
    state: PinState
    conversation: Conversation | None = None
    until: float | None = None  # monotonic deadline of a reserved or detached session
    version: int = 0
    written: int = 0
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    warned_moved: bool = False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class RedisDirectory:
    def __init__(
        self,
        redis_client: Redis,
        keys: AgentKeys,
        identity: PodIdentity,
        capacity: int,
        tokens: ResumeTokens,
        prompt_id: str = "",
        tuning: DirectoryTuning | None = None,
    ) -> None:
        self.redis = redis_client
        self.keys = keys
        self.identity = identity
        self.capacity = capacity
        self.tokens = tokens
        self.prompt_id = prompt_id
        self.tuning = tuning or DirectoryTuning()
        self.scripts = Scripts(redis_client)
        self.draining = False
        self._owned: dict[str, _Owned] = {}
        # The registered pods as of the last heartbeat: placement's candidates (PLACE re-checks each).
        self._pod_names: list[str] = []
        self._generation = 0  # bumped whenever _owned gains or loses a session (re-sync checks it)
        self._dirty: dict[str, None] = {}  # sessions whose latest snapshot is not in Redis yet (ordered)
        self._ended: dict[str, None] = {}  # sessions that ended while Redis was down
        self._healthy = True
        self._backoff = 0.0
        self._wake = asyncio.Event()
        self._kick_writer = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reported_depth = 0
        self._closed = False

    # ----- state ---------------------------------------------------------------

    @property
    def live_sessions(self) -> int:
        return sum(1 for s in self._owned.values() if s.state == "live")

    @property
    def store_healthy(self) -> bool:
        return self._healthy

    @property
    def pending_snapshots(self) -> int:
        return len(self._dirty)

    def _own(self, session_id: str, owned: _Owned) -> None:
        self._owned[session_id] = owned
        self._generation += 1

    def _disown(self, session_id: str) -> _Owned | None:
        self._generation += 1
        self._dirty.pop(session_id, None)
        return self._owned.pop(session_id, None)

    def _ms(self, seconds: float) -> int:
        return int(seconds * 1000)

    def _record(self) -> PodRecord:
        return PodRecord(
            name=self.identity.name,
            grpc_address=self.identity.grpc_address,
            http_url=self.identity.http_url,
            revision=self.identity.revision,
            prompt_id=self.prompt_id,
            capacity=self.capacity,
            live=self.live_sessions,
            state="draining" if self.draining else "ready",
        )

    def _set_depth(self) -> None:
        depth = len(self._dirty)
        session_metrics.SNAPSHOT_QUEUE_DEPTH.inc(depth - self._reported_depth)
        self._reported_depth = depth

    # ----- Redis calls ---------------------------------------------------------

    async def _io(self, call: Awaitable[T]) -> T:
        """Await a Redis call; an unreachable store opens the circuit and raises StoreDown."""
        try:
            return await call
        except STORE_DOWN as exc:
            self._mark_down(exc)
            raise StoreDown(str(exc)) from exc

    def _require_store(self) -> None:
        if not self._healthy:
            raise StoreDown("session store unreachable")

    def _mark_down(self, exc: BaseException) -> None:
        session_metrics.REDIS_ERRORS.inc()
        if self._healthy:
            log.warning("session store unreachable, serving from local state: %s", exc)
        self._healthy = False
        self._wake.set()  # the heartbeat loop owns probing and recovery

    # ----- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        try:
            await self._heartbeat()
        except StoreDown:
            log.warning("session store unreachable at start; registering when it is back")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="sessions-heartbeat"),
            loop.create_task(self._writer_loop(), name="sessions-snapshot-writer"),
        ]

    async def drain(self) -> None:
        """Leave placement at once (the heartbeat keeps saying draining)."""
        self.draining = True
        if self._healthy:
            with contextlib.suppress(StoreDown):
                await self._io(self.redis.hset(self.keys.pod(self.identity.name), "state", "draining"))
        self._wake.set()  # a heartbeat already in flight may have said ready: say draining again now
        log.info("pod %s draining: placement skips it", self.identity.name)

    async def aclose(self) -> None:
        if self._closed:
            return
        # The loops see the flag, write the last snapshots and return. They are not cancelled
        # while waiting on Redis: redis-py (8.x, Python 3.11) can swallow a cancellation there.
        self._closed = True
        self._wake.set()
        self._kick_writer.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.tuning.heartbeat_seconds + 2)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        self._tasks = []
        if self._healthy:
            name = self.identity.name
            with contextlib.suppress(StoreDown):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.srem(self.keys.pods, name)
                    pipe.delete(self.keys.pod(name))
                    await self._io(pipe.execute())
        for owned in self._owned.values():
            self._resolve(owned, ok=False)
        session_metrics.SNAPSHOT_QUEUE_DEPTH.dec(self._reported_depth)
        self._reported_depth = 0
        await self.redis.aclose()

    # ----- heartbeat and re-sync ------------------------------------------------

    def _expire_local(self) -> None:
        now = time.monotonic()
        for sid in [s for s, o in self._owned.items() if o.until is not None and o.until < now]:
            self._resolve(self._owned[sid], ok=False)
            self._disown(sid)
        self._set_depth()

    def _lease_ms(self, owned: _Owned) -> int:
        if owned.until is None:
            return self._ms(self.tuning.stale_seconds)
        return max(1, self._ms(owned.until - time.monotonic()))

    async def _heartbeat(self, restore: bool = False) -> None:
        """Rewrite the registry entry and refresh every owned session's pin and lease (``restore``:
        also write back pins Redis lost)."""
        self._expire_local()
        name = self.identity.name
        fields: list[str] = []
        for k, v in self._record().to_mapping().items():
            if k != "heartbeat_ms":
                fields += [k, v]
        args: list[Any] = [
            self.keys.prefix,
            name,
            self._ms(self.tuning.pod_ttl_seconds),
            self._ms(self.tuning.pin_ttl_seconds),
            self._ms(self.tuning.snapshot_ttl_seconds),
            self.identity.revision,
            "1" if restore else "0",
            len(fields),
            *fields,
        ]
        for sid, owned in self._owned.items():
            args += [sid, self._lease_ms(owned), owned.token_hash, owned.prompt_id, owned.state]
        keys = [self.keys.pod(name), self.keys.pods, self.keys.load(name)]
        moved, pods = await self._io(self.scripts.heartbeat(keys=keys, args=args))
        self._pod_names = sorted(_text(p) for p in pods)
        for sid in (_text(m) for m in moved):
            gone = self._owned.get(sid)
            if gone is not None and gone.state not in ("live", "moving"):
                self._disown(sid)
                self._resolve(gone, ok=False)
            if gone is not None and gone.state == "live" and not gone.warned_moved:
                gone.warned_moved = True  # once: the heartbeat sees it every interval
                log.warning("session %s is pinned to another pod now", sid, extra={"session_id": sid})

    async def _recover(self) -> None:
        """Redis is back: re-register, write back pins, flush queued snapshots and releases."""
        while True:  # until a heartbeat carried every session owned when it landed
            generation = self._generation
            await self._heartbeat(restore=True)
            if generation == self._generation:
                break
        # Redis may have restarted empty: every owned conversation goes back, latest version.
        for sid, owned in self._owned.items():
            if owned.conversation is not None:
                self._dirty[sid] = None
        while self._ended:
            ended = list(self._ended)
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in ended:
                    pipe.delete(self.keys.pin(sid), self.keys.snapshot(sid))
                    pipe.zrem(self.keys.load(self.identity.name), sid)
                await self._io(pipe.execute())
            for sid in ended:
                self._ended.pop(sid, None)
        self._healthy = True
        self._backoff = 0.0
        self._set_depth()
        self._kick_writer.set()
        log.info("session store reachable again: registry and %d sessions re-synced", len(self._owned))

    async def _heartbeat_loop(self) -> None:
        while not self._closed:
            if self._healthy:  # a heartbeat every interval, or at once when woken (drain, outage)
                timer = asyncio.get_running_loop().call_later(self.tuning.heartbeat_seconds, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
            elif self._backoff:  # probing a dead store: back off, whatever wakes us
                await asyncio.sleep(self._backoff)
            self._wake.clear()
            if self._closed:
                return
            if not self._healthy:
                self._backoff = min(self.tuning.max_backoff_seconds, max(0.25, self._backoff * 2))
            try:
                if self._healthy:
                    await self._heartbeat()
                else:
                    await self._recover()
            except StoreDown:
                continue
            except Exception:
                log.exception("session heartbeat failed")

    # ----- snapshots -----------------------------------------------------------

    def _mark_dirty(self, session_id: str) -> None:
        self._dirty.pop(session_id, None)
        self._dirty[session_id] = None
        while len(self._dirty) > self.tuning.max_pending_snapshots:
            oldest = next(iter(self._dirty))
            del self._dirty[oldest]
            session_metrics.SNAPSHOTS_DROPPED.inc()
            log.warning("snapshot queue full: dropped %s", oldest, extra={"session_id": oldest})
        self._set_depth()

    def _resolve(self, owned: _Owned, ok: bool, upto: int | None = None) -> None:
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for version, fut in owned.waiters:
            if ok and upto is not None and version > upto:
                keep.append((version, fut))
            else:
                _settle(fut)
        owned.waiters = keep

    async def _flush_snapshots(self) -> None:
        while self._dirty and self._healthy:
            batch = list(self._dirty)[:WRITE_BATCH]
            for sid in batch:
                del self._dirty[sid]
            sent: list[tuple[str, _Owned, int]] = []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid in batch:
                        owned = self._owned.get(sid)
                        if owned is None or owned.conversation is None:
                            continue
                        await self.scripts.snapshot(
                            keys=[self.keys.pin(sid), self.keys.snapshot(sid)],
                            args=[
                                self.identity.name,
                                owned.conversation.model_dump_json(by_alias=True),
                                self._ms(self.tuning.snapshot_ttl_seconds),
                            ],
                            client=pipe,
                        )
                        sent.append((sid, owned, owned.version))
                    results = await self._io(pipe.execute())
            except StoreDown:
                for sid, owned, _ in sent:
                    if sid in self._owned:
                        self._mark_dirty(sid)
                    self._resolve(owned, ok=False)
                raise
            finally:
                self._set_depth()
            for (sid, owned, version), written in zip(sent, results, strict=True):
                owned.written = max(owned.written, version)
                self._resolve(owned, ok=True, upto=version)
                if not written:
                    log.warning(
                        "snapshot not written: session moved to another pod", extra={"session_id": sid}
                    )

    async def _writer_loop(self) -> None:
        while not self._closed:
            await self._kick_writer.wait()
            self._kick_writer.clear()
            try:
                await self._flush_snapshots()
            except StoreDown:
                pass
            except Exception:
                log.exception("snapshot writer failed")
            if not self._healthy:
                for owned in self._owned.values():
                    self._resolve(owned, ok=False)

    async def snapshot(self, conversation: Conversation) -> None:
        """Keep the conversation and write it to Redis (returns once written; at once while Redis is down)."""
        sid = conversation.session_id
        owned = self._owned.get(sid)
        if owned is None:
            log.warning("snapshot of a session this pod does not own", extra={"session_id": sid})
            return
        owned.conversation = conversation
        owned.version += 1
        self._mark_dirty(sid)
        if not self._healthy:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        owned.waiters.append((owned.version, fut))
        self._kick_writer.set()
        # A timer ends the wait, not asyncio.wait_for/timeout: on Python 3.11 those can swallow the
        # cancellation of a session that closes right as its snapshot lands (its task then never ends).
        timer = asyncio.get_running_loop().call_later(self.tuning.max_backoff_seconds * 2, _settle, fut)
        try:
            await fut
        finally:
            timer.cancel()

    # ----- admission (streams arriving on this pod) --------------------------------

    async def admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        prompt_id: str,
        migration_token: str | None = None,
    ) -> Admission:
        if self.draining:
            raise AdmissionError(
                "unavailable", "pod is draining; resume the session to be placed on another pod", 1.0
            )
        new = not session_id
        migration_hash = ""
        if new:
            if migration_token:
                raise AdmissionError(
                    "invalid_argument", "a migration token needs the session id it was given for"
                )
            session_id = new_session_id()
            issued = self.tokens.issue(session_id)
            resume_token = issued.token
        else:
            assert session_id is not None
            check_session_id(session_id)
            if migration_token:
                migration_hash = token_hash(migration_token)
            else:
                verify_token(self.tokens, session_id, resume_token)
        th = token_hash(resume_token) if resume_token and not migration_hash else ""
        owned = self._owned.get(session_id)
        if owned is not None and owned.state in ("live", "moving"):
            raise AdmissionError("unavailable", "session is already connected to this pod", 1.0)
        if owned is not None and th and owned.token_hash != th:
            raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
        try:
            self._require_store()
            result = await self._io(
                self.scripts.claim(
                    keys=[self.keys.pin(session_id)],
                    args=[
                        self.keys.prefix,
                        session_id,
                        self.identity.name,
                        th,
                        self._ms(self.tuning.stale_seconds),
                        self._ms(self.tuning.stale_seconds),
                        self._ms(self.tuning.pin_ttl_seconds),
                        prompt_id,
                        self.capacity,
                        self.identity.revision,
                        migration_hash,
                    ],
                )
            )
        except StoreDown:
            if migration_hash:  # only Redis knows the move: the caller stays on its pod for now
                raise AdmissionError(
                    "unavailable", "session store unreachable; the call stays where it is", 1.0
                ) from None
            assert resume_token is not None
            return self._admit_local(session_id, th, prompt_id, new, resume_token)
        status = _text(result[0])
        if status == "unauthenticated":
            if migration_hash:
                raise AdmissionError(
                    "unauthenticated", "migration token is unknown, spent or for another pod"
                )
            raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
        if status == "wrong_pod":
            owner, address = _text(result[1]), _text(result[2])
            raise AdmissionError(
                "wrong_pod",
                f"session lives on pod {owner} ({address}); connect there or resume it",
                grpc_address=address,
            )
        if status == "full":
            raise AdmissionError("unavailable", f"pod is at capacity ({self.capacity} sessions)", 2.0)
        previous_state, raw_snapshot = _text(result[2]), _text(result[3])
        moved_from, th, frozen_ms = _text(result[4]), _text(result[5]), int(_text(result[6]) or 0)
        conversation = owned.conversation if owned is not None else None
        if conversation is None and raw_snapshot:
            conversation = self._parse_snapshot(session_id, raw_snapshot)
        self._own(
            session_id,
            _Owned(
                token_hash=th,
                prompt_id=prompt_id,
                state="live",
                conversation=conversation,
                version=owned.version if owned else 0,
                written=owned.written if owned else 0,
            ),
        )
        resumed = previous_state in ("live", "detached", "moving") or conversation is not None
        log.info(
            "session admitted (resumed=%s, moved from %s)",
            resumed,
            moved_from or "-",
            extra={"session_id": session_id},
        )
        return Admission(
            session_id=session_id,
            resumed=resumed,
            conversation=conversation,
            resume_token=resume_token if new else None,
            moved_from=moved_from or None,
            frozen_unix_ms=frozen_ms,
        )

    # ----- migration: moving a live call to another pod -------------------------------

    async def begin_migration(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        cross_revision: bool,
        exclude: set[str],
        follow_seconds: float,
    ) -> MigrationTicket:
        """Write the call's state and move its pin to another pod in one step, with a one-time token for
        the caller. Raises MigrationRefused (no_target, store_down, not_owner)."""
        owned = self._owned.get(session_id)
        if owned is None or owned.state != "live":
            raise MigrationRefused("not_owner")
        token = secrets.token_urlsafe(24)
        frozen_ms = int(time.time() * 1000)
        has_turns = bool(conversation.messages)
        try:
            self._require_store()
            result = await self._io(
                self.scripts.migrate(
                    keys=[self.keys.pin(session_id), self.keys.snapshot(session_id)],
                    args=[
                        self.keys.prefix,
                        session_id,
                        self.identity.name,
                        self._ms(self.tuning.stale_seconds),
                        self._ms(follow_seconds + self.tuning.stale_seconds),
                        self._ms(self.tuning.pin_ttl_seconds),
                        token_hash(token),
                        self.identity.revision,
                        "1" if cross_revision else "0",
                        conversation.model_dump_json(by_alias=True) if has_turns else "",
                        self._ms(self.tuning.snapshot_ttl_seconds),
                        frozen_ms,
                        *sorted(exclude),
                    ],
                )
            )
        except StoreDown:
            raise MigrationRefused("store_down") from None
        status = _text(result[0])
        if status != "moving":
            raise MigrationRefused(status)
        if has_turns:
            owned.conversation = conversation
            owned.written = owned.version
            self._dirty.pop(session_id, None)
            self._set_depth()
        owned.state = "moving"
        pod, grpc, http = _text(result[1]), _text(result[2]), _text(result[3])
        return MigrationTicket(
            pod=pod,
            grpc_address=grpc,
            webrtc_url=PodIdentity(name=pod, http_url=http).webrtc_url(session_id),
            revision=_text(result[4]),
            token=token,
        )

    async def abort_migration(self, session_id: str, target: str, force: bool = False) -> bool:
        """Take back a call whose caller did not follow; False when ``target`` (or another pod) serves it
        already (``force``: the caller said it stayed, so take it back from the target anyway). While
        Redis is down the call is kept here and the heartbeat takes the pin back later."""
        owned = self._owned.get(session_id)
        if owned is None:
            return False
        try:
            self._require_store()
            result = await self._io(
                self.scripts.abort_migration(
                    keys=[self.keys.pin(session_id)],
                    args=[
                        self.keys.prefix,
                        session_id,
                        self.identity.name,
                        self._ms(self.tuning.stale_seconds),
                        self._ms(self.tuning.stale_seconds),
                        self.identity.revision,
                        owned.prompt_id,
                        "1" if force else "0",
                        target,
                    ],
                )
            )
        except StoreDown:
            owned.state = "live"
            return True
        if _text(result[0]) != "reclaimed":
            return False
        owned.state = "live"
        return True

    async def push_handoff(self, session_id: str, handoff: Handoff) -> None:
        """Give the new pod the caller input held here since the call was frozen (best effort)."""
        key = self.keys.handoff(session_id)
        try:
            self._require_store()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, handoff.model_dump_json())
                pipe.pexpire(key, self._ms(HANDOFF_TTL_SECONDS))
                await self._io(pipe.execute())
        except StoreDown:
            log.warning("held caller input could not be handed over", extra={"session_id": session_id})

    async def take_handoff(self, session_id: str, from_pod: str, within: float) -> Handoff | None:
        """Wait up to ``within`` seconds for the handoff of ``from_pod`` (None: it never came, or that
        pod is gone: deregistered, lost or silent, so nothing more will come)."""
        key = self.keys.handoff(session_id)
        deadline = time.monotonic() + within
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                # Short blocking steps: the client's socket timeout is shorter than the whole wait.
                popped = await self._io(self.redis.blpop([key], timeout=min(BLPOP_STEP_SECONDS, remaining)))
                gone = not popped and await self._fresh_record(from_pod, ("ready", "draining")) is None
                if gone:
                    last: Any = await self._io(self.redis.lpop(key))  # pushed just before it went?
                    if last is None:
                        return None
                    popped = [key, last]
            except StoreDown:
                await asyncio.sleep(min(self.tuning.max_backoff_seconds, max(0.0, remaining)))
                continue
            if popped:
                try:
                    return Handoff.model_validate_json(_text(popped[1]))
                except ValidationError as exc:
                    log.error("unreadable handoff ignored: %s", exc, extra={"session_id": session_id})
                    return None
        return None

    def _parse_snapshot(self, session_id: str, raw: str) -> Conversation | None:
        try:
            return Conversation.model_validate_json(raw)
        except ValidationError as exc:
            log.error("unreadable snapshot ignored: %s", exc, extra={"session_id": session_id})
            return None

    def _local_room(self) -> bool:
        return not self.draining and len(self._owned) < self.capacity

    def _admit_local(self, session_id: str, th: str, prompt_id: str, new: bool, token: str) -> Admission:
        """Redis is down: admit what this pod knows, or a new session if it has room."""
        owned = self._owned.get(session_id)
        if owned is not None:
            owned.state, owned.until = "live", None
            return Admission(
                session_id=session_id, resumed=owned.conversation is not None, conversation=owned.conversation
            )
        if new and self._local_room():
            self._own(session_id, _Owned(token_hash=th, prompt_id=prompt_id, state="live"))
            session_metrics.PLACEMENTS.labels("local").inc()
            return Admission(session_id=session_id, resume_token=token)
        raise AdmissionError(
            "unavailable",
            "session store unreachable and this pod cannot take the session; retry shortly",
            NO_ROOM_RETRY_SECONDS,
        )

    async def release(self, session_id: str, outcome: str) -> None:
        owned = self._owned.get(session_id)
        if owned is None:
            return
        detach = outcome in RESUMABLE_OUTCOMES
        if detach:
            owned.state = "detached"
            owned.until = time.monotonic() + self.tuning.resume_window_seconds
        else:
            self._disown(session_id)
            self._set_depth()
            self._resolve(owned, ok=False)
        try:
            self._require_store()
            await self._io(
                self.scripts.release(
                    keys=[
                        self.keys.pin(session_id),
                        self.keys.snapshot(session_id),
                        self.keys.load(self.identity.name),
                    ],
                    args=[
                        self.identity.name,
                        session_id,
                        "detach" if detach else "end",
                        self._ms(self.tuning.resume_window_seconds),
                        self.keys.prefix,
                    ],
                )
            )
        except StoreDown:
            if not detach:  # a detached session is re-synced by the heartbeat anyway
                self._ended[session_id] = None
        log.info("session released (%s)", outcome, extra={"session_id": session_id})

    # ----- the session API: create and resume ------------------------------------------

    def _grant(
        self, session_id: str, token: str, expires: int, pod: str, grpc: str, http: str, resumed: bool
    ) -> Grant:
        return Grant(
            session_id=session_id,
            resume_token=token,
            pod=pod,
            grpc_address=grpc,
            webrtc_url=PodIdentity(name=pod, http_url=http).webrtc_url(session_id),
            resumed=resumed,
            token_expires_unix=expires,
        )

    def _grant_here(self, session_id: str, token: str, expires: int, resumed: bool) -> Grant:
        i = self.identity
        return self._grant(session_id, token, expires, i.name, i.grpc_address, i.http_url, resumed)

    async def create(self, metadata: dict[str, str], session_id: str | None = None) -> Grant:
        started = time.perf_counter()
        session_id = session_id or new_session_id()
        issued = self.tokens.issue(session_id)
        th = token_hash(issued.token)
        try:
            self._require_store()
            result = await self._place(session_id, th, expected_owner="")
        except StoreDown:
            if not self._local_room():
                session_metrics.PLACEMENTS.labels("unavailable").inc()
                raise AdmissionError(
                    "unavailable",
                    "session store unreachable and this pod has no room; retry shortly",
                    NO_ROOM_RETRY_SECONDS,
                ) from None
            self._own(
                session_id,
                _Owned(
                    token_hash=th,
                    prompt_id=self.prompt_id,
                    state="reserved",
                    until=time.monotonic() + self.tuning.reservation_seconds,
                ),
            )
            session_metrics.PLACEMENTS.labels("local").inc()
            return self._grant_here(session_id, issued.token, issued.expires_unix, resumed=False)
        session_metrics.PLACEMENT_SECONDS.observe(time.perf_counter() - started)
        status = _text(result[0])
        if status != "placed":
            session_metrics.PLACEMENTS.labels("no_capacity").inc()
            raise AdmissionError(
                "unavailable", "no agent pod has room for a new session", NO_ROOM_RETRY_SECONDS
            )
        session_metrics.PLACEMENTS.labels("placed").inc()
        pod, grpc, http = _text(result[1]), _text(result[4]), _text(result[5])
        log.info("session placed on %s", pod, extra={"session_id": session_id})
        return self._grant(session_id, issued.token, issued.expires_unix, pod, grpc, http, resumed=False)

    async def _place(self, session_id: str, th: str, expected_owner: str) -> list[Any]:
        names = self._pod_names or [_text(n) for n in await self._io(self.redis.smembers(self.keys.pods))]
        args: list[Any] = [
            self.keys.prefix,
            session_id,
            repr(self.tuning.epsilon),
            self._ms(self.tuning.stale_seconds),
            self._ms(self.tuning.reservation_seconds),
            self._ms(self.tuning.pin_ttl_seconds),
            th,
            expected_owner,
            *ring_order(session_id, names),
        ]
        result: list[Any] = await self._io(self.scripts.place(keys=[self.keys.pin(session_id)], args=args))
        return result

    async def _reachable(self, address: str) -> bool:
        try:
            host, port = split_address(address)
        except ValueError:
            return False
        connect = asyncio.ensure_future(asyncio.open_connection(host, port))
        try:
            done, _ = await asyncio.wait({connect}, timeout=self.tuning.probe_timeout_seconds)
        finally:
            if not connect.done():
                connect.cancel()
        if not done or connect.exception() is not None:
            await asyncio.gather(connect, return_exceptions=True)
            return False
        _, writer = connect.result()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def resume(self, session_id: str, resume_token: str | None) -> Grant:
        check_session_id(session_id)
        expires = verify_token(self.tokens, session_id, resume_token)
        assert resume_token is not None
        th = token_hash(resume_token)
        try:
            self._require_store()
            return await self._resume(session_id, resume_token, expires, th)
        except StoreDown:
            owned = self._owned.get(session_id)
            if owned is not None and owned.token_hash == th:
                return self._grant_here(session_id, resume_token, expires, resumed=True)
            session_metrics.PLACEMENTS.labels("unavailable").inc()
            raise AdmissionError(
                "unavailable", "session store unreachable; retry shortly", NO_ROOM_RETRY_SECONDS
            ) from None

    async def _resume(self, session_id: str, token: str, expires: int, th: str) -> Grant:
        started = time.perf_counter()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.pin(session_id))
            pipe.exists(self.keys.snapshot(session_id))
            raw_pin, has_snapshot = await self._io(pipe.execute())
        expected = ""
        if raw_pin:
            pin = PinRecord.from_mapping(raw_pin)
            if pin.token_hash != th:
                raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
            expected = pin.pod
            if pin.pod == self.identity.name and not self.draining:
                return self._grant_here(session_id, token, expires, resumed=True)
            if pin.pod != self.identity.name:
                owner = await self._live_owner(pin.pod)
                if owner is not None:
                    return self._grant(
                        session_id,
                        token,
                        expires,
                        owner.name,
                        owner.grpc_address,
                        owner.http_url,
                        resumed=True,
                    )
        elif not has_snapshot:
            raise AdmissionError("not_found", "session has ended or expired; create a new one")
        result = await self._place(session_id, th, expected_owner=expected)
        status = _text(result[0])
        if status == "moved":  # a concurrent resume re-placed it first
            owner = await self._live_owner(_text(result[1]), probe=False)
            if owner is None:
                raise AdmissionError("unavailable", "session is being moved; retry shortly", 1.0)
            return self._grant(
                session_id, token, expires, owner.name, owner.grpc_address, owner.http_url, resumed=True
            )
        if status != "placed":
            session_metrics.PLACEMENTS.labels("no_capacity").inc()
            raise AdmissionError(
                "unavailable", "no agent pod has room to resume the session", NO_ROOM_RETRY_SECONDS
            )
        session_metrics.PLACEMENT_SECONDS.observe(time.perf_counter() - started)
        session_metrics.PLACEMENTS.labels("replaced").inc()
        if expected == self.identity.name:
            self._disown(session_id)
        pod, grpc, http = _text(result[1]), _text(result[4]), _text(result[5])
        log.info(
            "session re-placed from %s to %s",
            expected or "(expired pin)",
            pod,
            extra={"session_id": session_id},
        )
        return self._grant(session_id, token, expires, pod, grpc, http, resumed=True)

    async def _fresh_record(self, pod: str, states: tuple[str, ...]) -> PodRecord | None:
        """The pod's record if it is registered in one of ``states`` with a fresh heartbeat."""
        raw, now = await self._io(self._pod_and_time(pod))
        if not raw:
            return None
        record = PodRecord.from_mapping(raw)
        fresh = is_fresh(record.heartbeat_ms, now, self._ms(self.tuning.stale_seconds))
        return record if fresh and record.state in states else None

    async def _live_owner(self, pod: str, probe: bool = True) -> PodRecord | None:
        """The pod's record if it is ready, fresh and (when probing) accepting connections."""
        record = await self._fresh_record(pod, ("ready",))
        if record is None:
            return None
        if probe and record.grpc_address and not await self._reachable(record.grpc_address):
            await self._io(self.scripts.mark_lost(keys=[self.keys.pod(pod)], args=[record.heartbeat_ms]))
            log.warning("pod %s is unreachable: marked lost", pod)
            return None
        return record

    async def _pod_and_time(self, pod: str) -> tuple[dict[str, str], int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.pod(pod))
            pipe.time()
            raw, (seconds, micros) = await pipe.execute()
        return decode_mapping(raw), int(seconds) * 1000 + int(micros) // 1000
