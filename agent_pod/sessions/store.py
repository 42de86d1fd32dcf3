"""The directory's one Redis connection and what it does when Redis fails.

Every part of the directory (registry, snapshot writer, placement, admission,
migration) calls Redis through ``Store.io``: an unreachable store opens the
circuit (``healthy`` goes false, one error counted) and raises ``StoreDown``, on
which each caller falls back to local knowledge. The registry's heartbeat loop
owns probing (with backoff) and recovery. A client whose every pooled connection
stayed busy for its whole wait raises ``StoreBusy`` instead: back-pressure, not an
outage, so nothing is counted, the circuit stays closed and nobody falls back to
local knowledge (that would book slots Redis has reserved for others).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.exceptions

from . import session_metrics
from .keys import AgentKeys
from .redis_client import AnyRedis
from .scripts import Scripts
from .tuning import DirectoryTuning

log = logging.getLogger("voicefleet.sessions")
T = TypeVar("T")

# What a dead, restarting or unreachable Redis raises (BusyLoadingError is a ConnectionError), and
# what one in the middle of a failover answers: a demoted master refuses writes (ReadOnlyError; under
# Sentinel redis-py turns it into a ConnectionError itself), a replica not yet promoted
# (MasterDownError), a cluster with a slot unserved (ClusterDownError, TryAgainError). All pass.
STORE_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    OSError,
)


class StoreDown(Exception):
    """Redis is unreachable; the caller falls back to local knowledge."""


class StoreBusy(Exception):
    """No Redis connection came free in time; the caller refuses or retries later."""


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    def __init__(self, redis_client: AnyRedis, keys: AgentKeys, tuning: DirectoryTuning) -> None:
        self.redis = redis_client
        self.keys = keys
        self.tuning = tuning
        self.scripts = Scripts(redis_client)
        self.healthy = True
        self.backoff = 0.0
        self.closed = False
        self.wake = asyncio.Event()  # wakes the heartbeat loop (drain, outage, close)

    async def io(self, call: Awaitable[T]) -> T:
        """Await a Redis call; an unreachable store opens the circuit and raises StoreDown."""
        try:
            return await call
        except redis.exceptions.MaxConnectionsError as exc:  # a ConnectionError, but not an outage
            raise StoreBusy(str(exc)) from exc
        except STORE_DOWN as exc:
            self.mark_down(exc)
            raise StoreDown(str(exc)) from exc

    def require(self) -> None:
        if not self.healthy:
            raise StoreDown("session store unreachable")

    def mark_down(self, exc: BaseException) -> None:
        session_metrics.REDIS_ERRORS.inc()
        if self.healthy:
            log.warning("session store unreachable, serving from local state: %s", exc)
        self.healthy = False
        self.wake.set()  # the heartbeat loop owns probing and recovery

    def mark_up(self) -> None:
        self.healthy = True
        self.backoff = 0.0

    def next_backoff(self) -> float:
        self.backoff = min(self.tuning.max_backoff_seconds, max(0.25, self.backoff * 2))
        return self.backoff
