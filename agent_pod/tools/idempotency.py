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

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_sha256(args: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(args).encode()).hexdigest()


def idempotency_key(namespace: str, agent: str, session_id: str, tool: str, args: dict[str, Any]) -> str:
    scope = canonical_json([namespace, agent, session_id, tool, args])
    return "vf1-" + hashlib.sha256(scope.encode()).hexdigest()[:40]


class IdempotencyStore(Protocol):
    """The primitives run_once is built on (Redis across pods, or one pod's memory)."""

    async def get(self, key: str) -> str | None: ...
    async def try_lock(self, key: str, owner: str, lease_seconds: float) -> bool: ...
    async def put(self, key: str, value: str, ttl_seconds: int) -> None: ...
    async def unlock(self, key: str, owner: str) -> None: ...


class LocalIdempotencyStore:
    """One process's store: for a pod without Redis (and benchmarks)."""

    def __init__(self) -> None:
        self._results: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> str | None:
        item = self._results.get(key)
        if item is None or item[0] < time.monotonic():
            self._results.pop(key, None)
            return None
        return item[1]

    async def try_lock(self, key: str, owner: str, lease_seconds: float) -> bool:
        now = time.monotonic()
        held = self._locks.get(key)
        if held is not None and held[0] > now:
            return False
        self._locks[key] = (now + lease_seconds, owner)
        return True

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        now = time.monotonic()
        self._results = {k: v for k, v in self._results.items() if v[0] >= now}  # bounded by live keys
        self._results[key] = (now + ttl_seconds, value)

    async def unlock(self, key: str, owner: str) -> None:
        if self._locks.get(key, (0.0, ""))[1] == owner:
            del self._locks[key]


_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisIdempotencyStore:
    """Keys ``<agent prefix>idem:<key>`` (the result) and ``...:lock`` (the call in flight)."""

    def __init__(self, client: AnyRedis, keys: AgentKeys) -> None:
        self.redis = client
        self.prefix = keys.prefix + "idem:"

    async def get(self, key: str) -> str | None:
        value = await self.redis.get(self.prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    async def try_lock(self, key: str, owner: str, lease_seconds: float) -> bool:
        ms = max(1, int(lease_seconds * 1000))
        return bool(await self.redis.set(self.prefix + key + ":lock", owner, nx=True, px=ms))

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        await self.redis.set(self.prefix + key, value, ex=ttl_seconds)

    async def unlock(self, key: str, owner: str) -> None:
        await self.redis.eval(_UNLOCK, 1, self.prefix + key + ":lock", owner)


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
    key, and not at all when a result is stored."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        stored = await store.get(key)
        if stored is not None:
            return Once(stored, replayed=True)
        if await store.try_lock(key, owner, lease_seconds):
            break
        if time.monotonic() >= deadline:
            return Once(None, refused=True)
        await asyncio.sleep(POLL_SECONDS)  # the first call runs; its result (or its lock) will change
    try:
        value = await call()
        if value is not None:
            await store.put(key, value, ttl_seconds)
        return Once(value)
    finally:
        try:
            await asyncio.shield(store.unlock(key, owner))
        except StoreErrors as exc:  # the lease expires on its own
            log.warning("idempotency lock %s not released: %s", key, exc)
