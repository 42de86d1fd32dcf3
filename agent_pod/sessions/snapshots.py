"""Writes each owned session's latest conversation to Redis after every turn.

``snapshot`` returns once the conversation is written (or at once while Redis is
down: it stays queued, latest version per session, and is written on recovery).
One writer task writes the queue in batches, each one SNAPSHOTS script call
(only the pin's owner may write through it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..conversation import Conversation
from .directory import PodIdentity
from .local_state import LocalSessions, Owned, resolve, settle
from .store import Store, StoreBusy, StoreDown
from .tuning import ms

log = logging.getLogger("voicefleet.sessions")
WRITE_BATCH = 256
BUSY_RETRY_SECONDS = 0.1


class SnapshotWriter:
    def __init__(self, store: Store, local: LocalSessions, identity: PodIdentity) -> None:
        self.store = store
        self.local = local
        self.identity = identity
        self.kick = asyncio.Event()

    async def flush(self) -> None:
        store, local = self.store, self.local
        while local.dirty and store.healthy:
            batch = list(local.dirty)[:WRITE_BATCH]
            for sid in batch:
                del local.dirty[sid]
            sent: list[tuple[str, Owned, int]] = []
            keys: list[str] = []
            args: list[Any] = [self.identity.name, ms(store.tuning.snapshot_ttl_seconds)]
            for sid in batch:
                owned = local.get(sid)
                if owned is None or owned.conversation is None:
                    continue
                keys += [store.keys.pin(sid), store.keys.snapshot(sid)]
                args.append(owned.conversation.model_dump_json(by_alias=True))
                sent.append((sid, owned, owned.version))
            if not sent:
                continue
            try:
                results = await store.io(store.scripts.snapshots(keys=keys, args=args))
            except (StoreDown, StoreBusy):
                for sid, owned, _ in sent:
                    if sid in local.owned:
                        local.mark_dirty(sid)
                    resolve(owned, ok=False)
                raise
            finally:
                local.report_depth()
            for (sid, owned, version), written in zip(sent, results, strict=True):
                owned.written = max(owned.written, version)
                resolve(owned, ok=True, upto=version)
                if not written:
                    log.warning(
                        "snapshot not written: session moved to another pod", extra={"session_id": sid}
                    )

    async def loop(self) -> None:
        while not self.store.closed:
            await self.kick.wait()
            self.kick.clear()
            try:
                await self.flush()
            except StoreDown:
                pass
            except StoreBusy:  # the queue stays; try again shortly
                asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self.kick.set)
            except Exception:
                log.exception("snapshot writer failed")
            if not self.store.healthy:
                for owned in self.local.owned.values():
                    resolve(owned, ok=False)

    async def snapshot(self, conversation: Conversation) -> None:
        """Keep the conversation and write it to Redis (returns once written; at once while Redis is down)."""
        sid = conversation.session_id
        owned = self.local.get(sid)
        if owned is None:
            log.warning("snapshot of a session this pod does not own", extra={"session_id": sid})
            return
        owned.conversation = conversation
        owned.version += 1
        self.local.mark_dirty(sid)
        if not self.store.healthy:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        owned.waiters.append((owned.version, fut))
        self.kick.set()
        # A timer ends the wait, not asyncio.wait_for/timeout: on Python 3.11 those can swallow the
        # cancellation of a session that closes right as its snapshot lands (its task then never ends).
        timer = loop.call_later(self.store.tuning.max_backoff_seconds * 2, settle, fut)
        try:
            await fut
        finally:
            timer.cancel()

    async def delete_ended(self) -> None:
        """Delete the keys of sessions that ended while Redis was down."""
        store, local = self.store, self.local
        while local.ended:
            ended = list(local.ended)
            async with store.redis.pipeline(transaction=False) as pipe:
                for sid in ended:
                    pipe.delete(store.keys.pin(sid), store.keys.snapshot(sid))
                    pipe.zrem(store.keys.load(self.identity.name), sid)
                await store.io(pipe.execute())
            for sid in ended:
                local.ended.pop(sid, None)
