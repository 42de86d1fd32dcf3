"""The operator's read of session load from each VoiceAgent's Redis.

The operator is never on the data path: a slow or absent Redis only makes
these reads return StoreDown (status keeps its last counts, the autoscaler and
deletion costs hold still); it never blocks reconciles of other agents.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from agent_pod.sessions.fleet_state import FleetState, delete_agent_keys, read_fleet

from .kube import Kube
from .plan import StoreDown
from .spec import VoiceAgentSpec

READ_TIMEOUT = 1.0


class FleetReader:
    def __init__(self, kube: Kube, default_url: str) -> None:
        self.kube = kube
        self.default_url = default_url
        self._clients: dict[str, aioredis.Redis] = {}

    async def _url(self, namespace: str, spec: VoiceAgentSpec) -> str:
        if spec.redis.secret_ref is not None:
            ref = spec.redis.secret_ref
            url = await self.kube.read_secret_key(namespace, ref.name, ref.key)
            if not url:
                raise LookupError(f"Secret {ref.name!r} has no key {ref.key!r} with a Redis URL")
            return url
        return spec.redis.url or self.default_url

    async def _client(self, namespace: str, spec: VoiceAgentSpec) -> aioredis.Redis:
        url = await self._url(namespace, spec)
        client = self._clients.get(url)
        if client is None:
            client = aioredis.Redis.from_url(
                url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=READ_TIMEOUT, decode_responses=False
            )
            self._clients[url] = client
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

    async def delete_keys(self, namespace: str, name: str, spec: VoiceAgentSpec) -> int:
        client = await self._client(namespace, spec)
        async with asyncio.timeout(READ_TIMEOUT * 5):
            return await delete_agent_keys(client, namespace, name)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
