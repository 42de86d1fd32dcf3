"""The session layer's Redis client.

Commands queue for a pooled connection (a bounded wait) instead of failing when
every connection is busy: a burst of creates is back-pressure, not an outage.
A wait that runs out raises ``PoolExhausted``, which the directory answers with
"unavailable, retry shortly" without counting a Redis error or falling back to
local admission (that fallback is for a Redis that is really down).
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# Fail fast when Redis is unreachable (the directory falls back to local state);
# one quick retry covers a pooled connection that died with a Redis restart.
CONNECT_TIMEOUT_SECONDS = 0.5
SOCKET_TIMEOUT_SECONDS = 1.0
POOL_CONNECTIONS = 64
POOL_WAIT_SECONDS = 2.0


class PoolExhausted(redis.exceptions.MaxConnectionsError):
    """No pooled connection came free within the wait."""


class QueuedConnectionPool(BlockingConnectionPool):
    """A blocking pool whose timed-out wait is told apart from a connection failure."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except redis.exceptions.ConnectionError as exc:
            # BlockingConnectionPool raises a plain ConnectionError from the wait's TimeoutError.
            if isinstance(exc.__cause__, TimeoutError) and str(exc) == "No connection available.":
                raise PoolExhausted(f"no Redis connection free within {self.timeout}s") from exc
            raise


def client_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    }


def connect_redis(url: str) -> Redis:
    pool = QueuedConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **client_options()
    )
    return Redis.from_pool(pool)
