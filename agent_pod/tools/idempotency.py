"""Idempotency of side-effecting tool calls: a stable key, and run-once against a shared store.

Key scope: agent (namespace/name) + session + tool + canonical arguments. It has
no turn or call id in it, so the same booking asked again after a resume on
another pod (new turn ids, new LLM call ids) maps to the same key, and so does
the LLM repeating itself. Two identical bookings in one call within the TTL are
therefore one booking: a tool that needs repeats takes a distinguishing argument.

The store keeps the terminal successful result for the tool's TTL; the same key
seen again returns it without sending anything. A call in flight holds a lease
lock, so a concurrent duplicate waits for the first result (or takes over if the
first failed) and is refused once its wait runs out: it never sends twice while
the first is in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions

from ..sessions.keys import AgentKeys
from ..sessions.redis_client import AnyRedis
from ..tool_metrics import TOOL_IDEMPOTENCY_STORE_ERRORS_TOTAL

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
LOCAL_MAX_RESULTS = 10_000  # results one pod keeps without Redis; the oldest go first


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_sha256(args: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(args).encode()).hexdigest()


def idempotency_key(namespace: str, agent: str, session_id: str, tool: str, args: dict[str, Any]) -> str:
    scope = canonical_json([namespace, agent, session_id, tool, args])
    return "vf1-" + hashlib.sha256(scope.encode()).hexdigest()[:40]


class IdempotencyStore(Protocol):
    """The two steps run_once is built on (Redis across pods, or one pod's memory)."""

    async def claim(self, key: str, owner: str, lease_seconds: float) -> tuple[str | None, bool]:
        """(the stored result, False) when there is one; else (None, whether ``owner`` got the lock)."""
        ...

    async def complete(self, key: str, owner: str, value: str | None, ttl_seconds: int) -> None:
        """Keep ``value`` (when not None) for ``ttl_seconds`` and release ``owner``'s lock."""
        ...


class LocalIdempotencyStore:
    """One process's store: for a pod without Redis, and the fallback while Redis is down."""

    def __init__(self) -> None:
        self._results: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, tuple[float, str]] = {}

    async def claim(self, key: str, owner: str, lease_seconds: float) -> tuple[str | None, bool]:
        now = time.monotonic()
        item = self._results.get(key)
        if item is not None and item[0] >= now:
            return item[1], False
        held = self._locks.get(key)
        if held is not None and held[0] > now:
            return None, False
        self._locks[key] = (now + lease_seconds, owner)
        return None, True

    async def complete(self, key: str, owner: str, value: str | None, ttl_seconds: int) -> None:
        now = time.monotonic()
        if value is not None:
            self._results.pop(key, None)
            self._results[key] = (now + ttl_seconds, value)
            while len(self._results) > LOCAL_MAX_RESULTS:  # insertion order: the oldest first
                del self._results[next(iter(self._results))]
        if self._locks.get(key, (0.0, ""))[1] == owner:
            del self._locks[key]


# One round trip each. Both keys carry the agent's hash tag: one slot on a Redis Cluster.
_CLAIM = """
local stored = redis.call('GET', KEYS[1])
if stored then return {1, stored} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, ''}
"""
_COMPLETE = """
if ARGV[2] == '1' then redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


class RedisIdempotencyStore:
    """Keys ``<agent prefix>idem:<key>`` (the result) and ``...:lock`` (the call in flight)."""

    def __init__(self, client: AnyRedis, keys: AgentKeys) -> None:
        self.redis = client
        self.prefix = keys.prefix + "idem:"

    async def claim(self, key: str, owner: str, lease_seconds: float) -> tuple[str | None, bool]:
        ms = str(max(1, int(lease_seconds * 1000)))
        found, stored = await self.redis.eval(
            _CLAIM, 2, self.prefix + key, self.prefix + key + ":lock", owner, ms
        )
        if int(found) == 1:
            return (stored.decode() if isinstance(stored, bytes) else str(stored)), False
        return None, int(found) == 2

    async def complete(self, key: str, owner: str, value: str | None, ttl_seconds: int) -> None:
        keep = "1" if value is not None else "0"
        await self.redis.eval(
            _COMPLETE,
            2,
            self.prefix + key,
            self.prefix + key + ":lock",
            owner,
            keep,
            value or "",
            str(ttl_seconds),
        )


@dataclass(frozen=True)
class Once:
    """What run_once did: ``value`` is the (stored or fresh) result, None when the call failed or was
    refused; ``replayed``: taken from the store without sending; ``refused``: a duplicate still runs."""

    value: str | None
    replayed: bool = False
    refused: bool = False


StoreErrors = (redis.exceptions.RedisError, OSError)


async def run_once(
    store: IdempotencyStore,
    key: str,
    call: Callable[[], Awaitable[str | None]],
    *,
    lease_seconds: float,
    ttl_seconds: int,
    wait_seconds: float,
) -> Once:
    """Run ``call`` (which returns the result to keep, or None when it failed) at most once at a time per
    key, and not at all when a result is stored. Raises the store's errors only before ``call`` runs."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        stored, locked = await store.claim(key, owner, lease_seconds)
        if stored is not None:
            return Once(stored, replayed=True)
        if locked:
            break
        if time.monotonic() >= deadline:
            return Once(None, refused=True)
        await asyncio.sleep(POLL_SECONDS)  # the first call runs; its result (or its lock's end) will come
    value: str | None = None
    try:
        value = await call()
        return Once(value)
    finally:
        try:
            # Shielded: a cancelled call still releases its lock (else duplicates wait out the lease).
            await asyncio.shield(store.complete(key, owner, value, ttl_seconds))
        except StoreErrors as exc:  # the call ran once all the same; its lease expires on its own
            TOOL_IDEMPOTENCY_STORE_ERRORS_TOTAL.inc()
            log.warning("idempotency key %s: result not kept: %s", key, exc)
