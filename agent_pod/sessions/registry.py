"""The pod's entry in the fleet registry: heartbeat, drain, recovery, and reading other pods' entries.

Every ``heartbeat_seconds`` one Lua step rewrites the pod's record and refreshes
the pin and lease of every session it owns. While Redis is unreachable the loop
probes with backoff; when Redis answers again it re-registers, writes back the
pins Redis lost (also after a restart that lost its data), queues every owned
conversation and deletes what ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .directory import PodIdentity
from .keys import AgentKeys
from .local_state import LocalSessions, resolve
from .placement import is_fresh
from .records import PodRecord, decode_mapping
from .redis_client import split_host_port
from .script_keys import heartbeat_keys
from .snapshots import SnapshotWriter
from .store import Store, StoreBusy, StoreDown, text
from .tuning import ms

log = logging.getLogger("voicefleet.sessions")


class PodRegistry:
    def __init__(
        self,
        store: Store,
        local: LocalSessions,
        snapshots: SnapshotWriter,
        identity: PodIdentity,
        capacity: int,
        prompt_id: str,
    ) -> None:
        self.store = store
        self.local = local
        self.snapshots = snapshots
        self.identity = identity
        self.capacity = capacity
        self.prompt_id = prompt_id
        self.draining = False
        # The registered pods as of the last heartbeat: placement's candidates (PLACE re-checks each).
        self.pod_names: list[str] = []

    def record(self) -> PodRecord:
        return PodRecord(
            name=self.identity.name,
            grpc_address=self.identity.grpc_address,
            http_url=self.identity.http_url,
            revision=self.identity.revision,
            prompt_id=self.prompt_id,
            capacity=self.capacity,
            live=self.local.live,
            state="draining" if self.draining else "ready",
        )

    async def heartbeat(self, restore: bool = False) -> None:
        """Rewrite the registry entry and refresh every owned session's pin and lease (``restore``:
        also write back pins Redis lost)."""
        store, keys, tuning = self.store, self.store.keys, self.store.tuning
        self.local.expire()
        name = self.identity.name
        fields: list[str] = []
        for k, v in self.record().to_mapping().items():
            if k != "heartbeat_ms":
                fields += [k, v]
        sessions = list(self.local.owned.items())
        args: list[Any] = [
            name,
            ms(tuning.pod_ttl_seconds),
            ms(tuning.pin_ttl_seconds),
            ms(tuning.snapshot_ttl_seconds),
            self.identity.revision,
            "1" if restore else "0",
            len(fields),
            *fields,
            len(sessions),
        ]
        for sid, owned in sessions:
            args += [sid, self.local.lease_ms(owned), owned.token_hash, owned.prompt_id, owned.state]
        others = [n for n in self.pod_names if n != name]
        args += others
        script_keys = heartbeat_keys(keys, name, [sid for sid, _ in sessions], others)
        moved, pods, leases = await store.io(store.scripts.heartbeat(keys=script_keys, args=args))
        self.local.set_held(
            {text(leases[i]): int(text(leases[i + 1])) / 1000 for i in range(0, len(leases), 2)}
        )
        if self.local.ended and not restore:  # releases that found every connection busy
            await self.snapshots.delete_ended()
        self.pod_names = sorted(text(p) for p in pods)
        for sid in (text(m) for m in moved):
            gone = self.local.get(sid)
            if gone is not None and gone.state not in ("live", "moving"):
                self.local.disown(sid)
                resolve(gone, ok=False)
            if gone is not None and gone.state == "live" and not gone.warned_moved:
                gone.warned_moved = True  # once: the heartbeat sees it every interval
                log.warning("session %s is pinned to another pod now", sid, extra={"session_id": sid})

    async def recover(self) -> None:
        """Redis is back: re-register, write back pins, flush queued snapshots and releases."""
        while True:  # until a heartbeat carried every session owned when it landed
            generation = self.local.generation
            await self.heartbeat(restore=True)
            if generation == self.local.generation:
                break
        self.local.requeue_all()
        await self.snapshots.delete_ended()
        self.store.mark_up()
        self.snapshots.kick.set()
        log.info("session store reachable again: registry and %d sessions re-synced", len(self.local.owned))

    async def loop(self) -> None:
        store = self.store
        while not store.closed:
            if store.healthy:  # a heartbeat every interval, or at once when woken (drain, outage)
                timer = asyncio.get_running_loop().call_later(store.tuning.heartbeat_seconds, store.wake.set)
                try:
                    await store.wake.wait()
                finally:
                    timer.cancel()
            elif store.backoff:  # probing a dead store: back off, whatever wakes us
                await asyncio.sleep(store.backoff)
            store.wake.clear()
            if store.closed:
                return
            if not store.healthy:
                store.next_backoff()
            try:
                if store.healthy:
                    await self.heartbeat()
                else:
                    await self.recover()
            except (StoreDown, StoreBusy):
                continue
            except Exception:
                log.exception("session heartbeat failed")

    async def drain(self) -> None:
        """Leave placement at once (the heartbeat keeps saying draining)."""
        self.draining = True
        store = self.store
        if store.healthy:
            with contextlib.suppress(StoreDown, StoreBusy):
                await store.io(store.redis.hset(store.keys.pod(self.identity.name), "state", "draining"))
        store.wake.set()  # a heartbeat already in flight may have said ready: say draining again now
        log.info("pod %s draining: placement skips it", self.identity.name)

    async def deregister(self) -> None:
        store, name = self.store, self.identity.name
        if not store.healthy:
            return
        with contextlib.suppress(StoreDown, StoreBusy):
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.srem(store.keys.pods, name)
                pipe.delete(store.keys.pod(name))
                await store.io(pipe.execute())

    # ----- other pods ----------------------------------------------------------------

    async def fresh_record(
        self, pod: str, states: tuple[str, ...], keys: AgentKeys | None = None
    ) -> PodRecord | None:
        """The pod's record if it is registered in one of ``states`` with a fresh heartbeat (``keys``: a pod
        of another agent of the same Redis)."""
        raw, now = await self.store.io(self._pod_and_time(pod, keys))
        if not raw:
            return None
        record = PodRecord.from_mapping(raw)
        fresh = is_fresh(record.heartbeat_ms, now, ms(self.store.tuning.stale_seconds))
        return record if fresh and record.state in states else None

    async def live_owner(self, pod: str, probe: bool = True) -> PodRecord | None:
        """The pod's record if it is ready, fresh and (when probing) accepting connections."""
        record = await self.fresh_record(pod, ("ready",))
        if record is None:
            return None
        if probe and record.grpc_address and not await self._reachable(record.grpc_address):
            store = self.store
            await store.io(store.scripts.mark_lost(keys=[store.keys.pod(pod)], args=[record.heartbeat_ms]))
            log.warning("pod %s is unreachable: marked lost", pod)
            return None
        return record

    async def _pod_and_time(self, pod: str, keys: AgentKeys | None = None) -> tuple[dict[str, str], int]:
        flat, now = await self.store.scripts.pod_and_time(keys=[(keys or self.store.keys).pod(pod)])
        return decode_mapping(dict(zip(flat[::2], flat[1::2], strict=True))), int(now)

    async def _reachable(self, address: str) -> bool:
        try:
            host, port = split_host_port(address)
        except ValueError:
            return False
        connect = asyncio.ensure_future(asyncio.open_connection(host, port))
        try:
            done, _ = await asyncio.wait({connect}, timeout=self.store.tuning.probe_timeout_seconds)
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
