"""Memory across calls of one caller, on a real pod and a real Redis: written after a call's turns, loaded
when the caller's next call starts, and forgotten through the session API (scope memory:delete) and
`voicefleet memory delete`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from agent_pod.cli import main as cli
from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.config import Scope
from agent_pod.context.blocks import slot_values
from agent_pod.context.persistence import CallerMemory, caller_memory_key
from agent_pod.conversation import Conversation
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from agent_pod.runtime import Pod
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.sessions.keys import AgentKeys
from agent_pod.settings import PodSettings
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

CALLER = "+15550100"
EXTRACT = {"match": "^Update the memory", "reply": '{"booking": {"day": "friday", "party": 4}}'}


class MemoryPod:
    def __init__(self, workdir: Path, redis: RedisServer) -> None:
        creds = workdir / "creds" / "api-keys"
        creds.mkdir(parents=True)
        grants: dict[str, list[Scope]] = {
            "app": ["sessions:create", "sessions:resume"],
            "privacy": ["memory:delete"],
        }
        self.keys: dict[str, str] = {}
        entries = []
        for name, scopes in grants.items():
            self.keys[name], entry = new_api_key("acme", scopes)
            entries.append(entry)
        (creds / "keyring.json").write_text(json.dumps(Keyring(keys=entries).dump()))
        (workdir / "resume.key").write_bytes(b"memory-test-key-0123456789abcdef")
        self.config = synthetic_config(
            agent="mem-" + uuid.uuid4().hex[:6],
            namespace="memory",
            auth={"required": True, "apiKeysSecretRef": {"name": "api-keys", "key": "keyring.json"}},
            memory={
                "blocks": [
                    {"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day", "party"]}
                ],
                "extraction": {
                    "enabled": True,
                    "llm": {"provider": "scripted", "options": {"rules": json.dumps([EXTRACT])}},
                },
                "persistence": {"callerKeyField": "caller_id", "ttlSeconds": 3600},
            },
        )
        self.settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name="pod-a",
            redis_url=redis.url,
            resume_key_file=workdir / "resume.key",
            credentials_dir=workdir / "creds",
            log_format="text",
        )
        self.pod = Pod(self.settings, self.config, pod_ports())
        self.redis = aioredis.Redis.from_url(redis.url)
        self.key = caller_memory_key(AgentKeys("memory", self.config.agent), CALLER)

    async def call(self, metadata: dict[str, str], text: str | None = None) -> tuple[GrpcCaller, str]:
        status, grant = await self.post("/v1/sessions", "app", {"metadata": metadata})
        assert status == 201, grant
        caller = GrpcCaller(
            grant["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
        )
        await caller.open()
        if text is not None:
            caller.send_text(text)
            await caller.recorder.wait(lambda s: len(s.agent_texts) >= 1, 20)
        return caller, grant["sessionId"]

    def memory_of(self, session_id: str) -> dict[str, Any]:
        assert self.pod.hub is not None
        live = next(x for x in self.pod.hub.live() if x.id == session_id)
        return slot_values(live.session.conversation.memory[0])

    async def post(self, path: str, key: str | None, body: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.pod.http_url + path, json=body, headers=headers) as r,
        ):
            return r.status, await r.json()


@pytest.fixture
async def memory_pod(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[MemoryPod]:
    fixture = MemoryPod(tmp_path, redis_server)
    await fixture.pod.start()
    try:
        yield fixture
    finally:
        await fixture.pod.stop()
        await fixture.redis.aclose()


async def test_memory_follows_the_caller_to_the_next_call_until_deleted(
    memory_pod: MemoryPod, capsys: pytest.CaptureFixture[str]
) -> None:
    m = memory_pod
    first, _ = await m.call({"caller_id": CALLER}, "a table on friday for four")
    stored = await async_wait_for(lambda: m.redis.get(m.key), timeout=20, what="memory in Redis")
    assert (
        isinstance(stored, bytes) and json.loads(stored)["blocks"][0]["value"] == '{"day":"friday","party":4}'
    )
    assert 3500 < await m.redis.ttl(m.key) <= 3600
    assert await m.redis.keys(m.key.rsplit(":", 1)[0] + ":*") == [m.key.encode()]  # only its hash
    await first.close()

    second, sid = await m.call({"caller_id": CALLER})
    assert m.memory_of(sid) == {"day": "friday", "party": 4}  # loaded before the first turn
    stranger, other = await m.call({"caller_id": "+15550199"})
    assert m.memory_of(other) == {}
    await second.close()
    await stranger.close()

    # deleting needs the memory:delete scope, and names a bad field
    assert (await m.post("/v1/memory/delete", "app", {"callerKey": CALLER}))[0] == 403
    assert (await m.post("/v1/memory/delete", None, {"callerKey": CALLER}))[0] == 401
    status, body = await m.post("/v1/memory/delete", "privacy", {"caller": CALLER})
    assert status == 400 and "callerKey" in body["error"]["message"]
    assert await m.post("/v1/memory/delete", "privacy", {"callerKey": CALLER}) == (200, {"deleted": True})
    assert await m.redis.get(m.key) is None

    # the CLI, once the memory is back
    third, sid = await m.call({"caller_id": CALLER}, "friday for four again")
    await async_wait_for(lambda: m.redis.get(m.key), timeout=20, what="memory written again")
    await third.close()
    args = ["memory", "delete", "--url", m.pod.http_url, "--caller-key", CALLER, "--api-key"]
    assert await asyncio.to_thread(cli, [*args, m.keys["privacy"]]) == 0
    assert await m.redis.get(m.key) is None and capsys.readouterr().out.strip() == "deleted"
    assert await asyncio.to_thread(cli, [*args, m.keys["privacy"]]) == 0
    assert capsys.readouterr().out.strip() == "no memory kept for this caller"
    assert await asyncio.to_thread(cli, [*args, m.keys["app"]]) == 1
    assert "refused (403 permission_denied)" in capsys.readouterr().err

    fourth, sid = await m.call({"caller_id": CALLER})
    assert m.memory_of(sid) == {}
    await fourth.close()


async def test_a_call_that_ends_during_its_last_extraction_still_remembers_it(
    redis_server: RedisServer,
) -> None:
    slow = {
        "provider": "scripted",
        "options": {"rules": json.dumps([EXTRACT]), "first_token_delay_ms": "1000"},
    }
    config = synthetic_config(
        agent="final-" + uuid.uuid4().hex[:6],
        namespace="memory",
        memory={
            "blocks": [
                {"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day", "party"]}
            ],
            "extraction": {"enabled": True, "llm": slow},
            "persistence": {"callerKeyField": "caller_id", "ttlSeconds": 600},
        },
    )
    assert config.memory.persistence is not None
    redis = aioredis.Redis.from_url(redis_server.url)
    keys = AgentKeys("memory", config.agent)
    session = AgentSession(
        session_id="final",
        config=config,
        providers=build_providers(config.pipeline),
        output_sample_rate=24000,
        conversation=Conversation(session_id="final", prompt_id="p", metadata={"caller_id": CALLER}),
        caller_memory=CallerMemory(redis, keys, config.memory.persistence),
    )
    try:
        await session.start()
        events = session.events()
        session.push_text("a table on friday for four")
        while True:  # play the answer out, as a transport would
            while session.pull_audio() is not None:
                pass
            event = await asyncio.wait_for(anext(events), 30)
            if event.type == "agent_text" and getattr(event, "final", False):
                break
        await session.close("client_ended")  # the extraction is still waiting on its LLM
        stored = await redis.get(caller_memory_key(keys, CALLER))
        assert (
            isinstance(stored, bytes)
            and json.loads(stored)["blocks"][0]["value"] == '{"day":"friday","party":4}'
        )
    finally:
        await session.close("client_ended")
        await redis.delete(caller_memory_key(keys, CALLER))
        await redis.aclose()
