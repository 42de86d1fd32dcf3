"""The operator's read of session load from each VoiceAgent's Redis, and its canary split there.

The operator is never on the data path: a slow or absent Redis only makes
these reads return StoreDown (status keeps its last counts, the autoscaler and
deletion costs hold still); it never blocks reconciles of other agents.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from agent_pod.config import SecretKeyRef
from agent_pod.sessions.fleet_state import FleetState, delete_agent_keys, read_fleet
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import Rollout
from agent_pod.sessions.redis_client import AnyRedis, RedisConnection, connect
from agent_pod.sessions.revision_stats import RevisionCounters
from agent_pod.sessions.rollout_store import clear_rollout, read_revision_counters, write_rollout

from .kube import Kube
from .plan import StoreDown
from .spec import VoiceAgentSpec

READ_TIMEOUT = 1.0


class FleetReader:
    def __init__(self, kube: Kube, default_url: str) -> None:
        self.kube = kube
        self.default_url = default_url
        self._clients: dict[RedisConnection, AnyRedis] = {}
        self._cert_dir: Path | None = None

    async def _secret(self, namespace: str, ref: SecretKeyRef, what: str) -> str:
        value = await self.kube.read_secret_key(namespace, ref.name, ref.key)
        if not value:
            raise LookupError(f"Secret {ref.name!r} has no key {ref.key!r} with {what}")
        return value

    async def _connection(self, namespace: str, spec: VoiceAgentSpec) -> RedisConnection:
        """The pods' view of their Redis (agent_pod.settings), from the spec and its Secrets."""
        redis = spec.redis
        options: dict[str, Any] = {"cluster": redis.cluster}
        if redis.sentinel is not None:
            options["sentinels"] = tuple(redis.sentinel.addresses)
            options["sentinel_master"] = redis.sentinel.master_name
            if redis.sentinel.password_secret_ref is not None:
                ref = redis.sentinel.password_secret_ref
                options["sentinel_password"] = await self._secret(namespace, ref, "a sentinel password")
        elif redis.secret_ref is not None:
            options["url"] = await self._secret(namespace, redis.secret_ref, "a Redis URL")
        else:
            options["url"] = redis.url or self.default_url
        if redis.password_secret_ref is not None:
            options["password"] = await self._secret(namespace, redis.password_secret_ref, "a Redis password")
        if redis.tls is not None:
            options["tls"] = True
            options["tls_ca_data"] = await self._secret(namespace, redis.tls.ca_secret_ref, "a CA bundle")
            if redis.tls.client_cert_secret_name:
                options.update(await self._client_cert(namespace, redis.tls.client_cert_secret_name))
        return RedisConnection(**options)

    async def _client_cert(self, namespace: str, secret: str) -> dict[str, str]:
        """The client certificate as files (redis-py loads certificates from files only)."""
        if self._cert_dir is None:
            self._cert_dir = Path(tempfile.mkdtemp(prefix="vf-redis-client-"))
        files: dict[str, str] = {}
        for key, option in (("tls.crt", "tls_cert_file"), ("tls.key", "tls_key_file")):
            value = await self._secret(namespace, SecretKeyRef(name=secret, key=key), "a client certificate")
            path = self._cert_dir / f"{namespace}.{secret}.{key}"
            path.write_text(value)
            path.chmod(0o600)
            files[option] = str(path)
        return files

    async def _client(self, namespace: str, spec: VoiceAgentSpec) -> AnyRedis:
        connection = await self._connection(namespace, spec)
        client = self._clients.get(connection)
        if client is None:
            client = connect(
                connection,
                socket_timeout=READ_TIMEOUT,
                socket_connect_timeout=READ_TIMEOUT,
                decode_responses=False,
            )
            self._clients[connection] = client
        return client

    async def read(self, namespace: str, name: str, spec: VoiceAgentSpec) -> FleetState:
        client = await self._client(namespace, spec)
        async with asyncio.timeout(READ_TIMEOUT * 2):
            return await read_fleet(client, namespace, name)

    async def read_or_down(self, namespace: str, name: str, spec: VoiceAgentSpec) -> FleetState | StoreDown:
        """The fleet, or why it could not be read (the caller decides what to say, and how often)."""
        try:
            return await self.read(namespace, name, spec)
        except Exception as exc:
            return StoreDown(f"session store unreachable: {type(exc).__name__}: {exc}"[:200])

    async def set_rollout(
        self, namespace: str, name: str, spec: VoiceAgentSpec, canary_revision: str, weight: int
    ) -> None:
        """Send ``weight`` percent (0..100) of the agent's new sessions to the pods of ``canary_revision``;
        the rest go to every other revision. At 0 the canary's pods take no new session (unless the
        stable side is full). Raises ValueError for a bad revision or weight, and the Redis error when
        the store is unreachable (placement keeps the split it had)."""
        rollout = Rollout(canary=canary_revision, weight=weight)
        client = await self._client(namespace, spec)
        async with asyncio.timeout(READ_TIMEOUT * 2):
            await write_rollout(client, AgentKeys(namespace, name), rollout)

    async def clear_rollout(self, namespace: str, name: str, spec: VoiceAgentSpec) -> None:
        """No canary any more: placement treats every pod alike."""
        client = await self._client(namespace, spec)
        async with asyncio.timeout(READ_TIMEOUT * 2):
            await clear_rollout(client, AgentKeys(namespace, name))

    async def read_revision_counters(
        self, namespace: str, name: str, spec: VoiceAgentSpec, revisions: list[str]
    ) -> dict[str, RevisionCounters] | StoreDown:
        """Each revision's cumulative counters (take differences between reads for a window), or why
        they could not be read. A hash that is not counters raises ValueError naming its key and field."""
        try:
            client = await self._client(namespace, spec)
            async with asyncio.timeout(READ_TIMEOUT * 2):
                return await read_revision_counters(client, AgentKeys(namespace, name), revisions)
        except ValueError:
            raise
        except Exception as exc:
            return StoreDown(f"session store unreachable: {type(exc).__name__}: {exc}"[:200])

    async def delete_keys(self, namespace: str, name: str, spec: VoiceAgentSpec) -> int:
        client = await self._client(namespace, spec)
        async with asyncio.timeout(READ_TIMEOUT * 5):
            return await delete_agent_keys(client, namespace, name)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
