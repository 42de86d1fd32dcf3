"""Memory kept across calls of one caller (``memory.persistence``), in Redis with a TTL.

    vf:v1:{ns/agent}:memory:<sha256 of the caller key>   STRING CallerMemoryRecord JSON, EX ttlSeconds

The caller key (a session metadata field, e.g. a phone number) is stored only as a hash. The record
holds the writable blocks' values; the configured blocks decide what is taken back (merge_blocks).
Redis trouble never touches the call: a failed load starts with fresh memory, a failed save logs.
"""

from __future__ import annotations

import hashlib
import logging

from pydantic import Field
from redis.exceptions import RedisError

from ..config import MemoryPersistenceSpec, Model
from ..sessions.keys import AgentKeys
from ..sessions.redis_client import AnyRedis
from ..sessions.redis_directory import RedisDirectory
from .blocks import MemoryBlock

log = logging.getLogger("voicefleet.context.memory")


class CallerMemoryRecord(Model):
    blocks: list[MemoryBlock] = Field(default_factory=list, description="Writable blocks with their values.")


def caller_memory_key(keys: AgentKeys, caller_key: str) -> str:
    return f"{keys.prefix}memory:{hashlib.sha256(caller_key.encode()).hexdigest()}"


class CallerMemory:
    def __init__(self, redis: AnyRedis, keys: AgentKeys, spec: MemoryPersistenceSpec) -> None:
        self.redis = redis
        self.keys = keys
        self.spec = spec

    def _key(self, metadata: dict[str, str]) -> str | None:
        caller = metadata.get(self.spec.caller_key_field, "").strip()
        return caller_memory_key(self.keys, caller) if caller else None

    async def load(self, metadata: dict[str, str]) -> list[MemoryBlock]:
        key = self._key(metadata)
        if key is None:
            return []
        try:
            raw = await self.redis.get(key)
        except RedisError as exc:
            log.warning("caller memory not loaded: %s", exc)
            return []
        if raw is None:
            return []
        try:
            return CallerMemoryRecord.model_validate_json(raw).blocks
        except ValueError as exc:
            log.warning("caller memory record unreadable, ignored: %s", exc)
            return []

    async def save(self, metadata: dict[str, str], blocks: list[MemoryBlock]) -> None:
        key = self._key(metadata)
        if key is None:
            return
        record = CallerMemoryRecord(blocks=[b for b in blocks if not b.read_only])
        try:
            await self.redis.set(key, record.model_dump_json(by_alias=True), ex=self.spec.ttl_seconds)
        except RedisError as exc:
            log.warning("caller memory not saved: %s", exc)

    async def delete(self, caller_key: str) -> bool:
        """Forget a caller (raises RedisError: the API answers 503). True when there was memory."""
        return bool(await self.redis.delete(caller_memory_key(self.keys, caller_key)))


def caller_memory(spec: MemoryPersistenceSpec | None, directory: object) -> CallerMemory | None:
    """The caller memory of a pod whose sessions live in Redis, when the agent persists memory (a pod
    without Redis keeps none)."""
    if spec is None or not isinstance(directory, RedisDirectory):
        return None
    return CallerMemory(directory.redis, directory.keys, spec)
