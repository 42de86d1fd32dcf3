"""Adds this pod's counts to its revision's hash in Redis, about once a second.

One MULTI/EXEC of HINCRBYs (and a TTL refresh) per flush. No call ever waits on it: the pipeline
only touches the in-memory tally. While Redis is unreachable nothing is sent (the registry's
heartbeat loop owns probing) and the counts wait in memory, a handful of integers however long the
outage lasts; the first flush after recovery carries them. A flush that fails midway hands its
increments back to the tally (a reply lost after Redis applied them would count them twice: rare,
and the analysis reads rates over minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .revision_stats import RevisionTally
from .store import Store, StoreBusy, StoreDown
from .tuning import ms

log = logging.getLogger("voicefleet.sessions")


class RevisionStatsWriter:
    def __init__(self, store: Store, tally: RevisionTally, revision: str) -> None:
        self.store = store
        self.tally = tally
        self.key = store.keys.revision_stats(revision)
        self.kick = asyncio.Event()  # wakes the loop at once (close)

    async def flush(self) -> None:
        """Write the pending increments; raises StoreDown/StoreBusy with the increments kept."""
        increments = self.tally.take()
        if not increments:
            return
        store = self.store
        try:
            async with store.redis.pipeline(transaction=True) as pipe:
                for name, n in increments.items():
                    pipe.hincrby(self.key, name, n)
                pipe.pexpire(self.key, ms(store.tuning.revision_stats_ttl_seconds))
                await store.io(pipe.execute())
        except BaseException:
            self.tally.give_back(increments)
            raise

    async def loop(self) -> None:
        store = self.store
        while not store.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(store.tuning.revision_stats_flush_seconds):
                    await self.kick.wait()
            self.kick.clear()
            if not store.healthy:
                continue
            try:
                await self.flush()
            except (StoreDown, StoreBusy):
                continue
            except Exception:
                log.exception("writing the revision's counters failed")
        if store.healthy:  # closing: the last counts
            with contextlib.suppress(StoreDown, StoreBusy):
                await self.flush()
