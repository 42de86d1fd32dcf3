"""Memory and the summary survive the pod: two real pods on a real Redis, a gRPC caller; the owner
crashes after the call's memory was extracted and its older turns summarised; the call is resumed on the
other pod with both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.config import AgentConfig
from agent_pod.context.blocks import slot_values
from agent_pod.conversation import Conversation
from agent_pod.sessions.keys import AgentKeys
from tests.support.migration import Fleet, answers
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

EXTRACT = {"match": "^Update the memory", "reply": '{"booking": {"day": "friday", "party": 4}}'}
MEMORY: dict[str, Any] = {
    "blocks": [{"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day", "party"]}],
    "extraction": {
        "enabled": True,
        "llm": {"provider": "scripted", "options": {"rules": json.dumps([EXTRACT])}},
    },
}
LONG = "I would like a table on Friday evening for four people, near the window if you can. " * 3


async def test_a_resumed_call_keeps_its_memory_and_summary(tmp_path: Path, redis_server: RedisServer) -> None:
    fleet = Fleet(tmp_path, redis_server)
    context = {"maxTokens": 2000, "targetTokens": 200, "keepLastTurns": 1}
    fleet.config = AgentConfig.model_validate({**fleet.config.dump(), "memory": MEMORY, "context": context})
    keys = AgentKeys(fleet.config.namespace, fleet.config.agent)
    store = aioredis.Redis.from_url(redis_server.url)
    callers: list[GrpcCaller] = []
    try:
        a = await fleet.add("pod-a")
        await fleet.add("pod-b")
        async with aiohttp.ClientSession() as http, http.post(a.http_url + "/v1/sessions", json={}) as r:
            grant = await r.json()
        sid = grant["sessionId"]
        first = GrpcCaller(grant["grpcAddress"], session_id=sid, resume_token=grant["resumeToken"])
        callers.append(first)
        await first.open()
        for n in range(1, 4):
            first.send_text(f"{n}: {LONG}")
            await answers(first, n)

        async def snapshot() -> Conversation | None:
            raw = await store.get(keys.snapshot(sid))
            convo = Conversation.model_validate_json(raw) if raw else None
            done = convo is not None and convo.summary and slot_values(convo.memory[0])
            return convo if done else None

        saved = await async_wait_for(snapshot, timeout=30, what="memory and summary in Redis")
        assert slot_values(saved.memory[0]) == {"day": "friday", "party": 4} and saved.summary_through >= 1

        first.drop()
        await fleet.crash(grant["pod"])
        survivor = next(iter(fleet.pods.values()))
        resume = f"{survivor.http_url}/v1/sessions/{sid}/resume"
        async with (
            aiohttp.ClientSession() as http,
            http.post(resume, json={"resumeToken": grant["resumeToken"]}) as r,
        ):
            assert r.status == 200
            moved = await r.json()
        second = GrpcCaller(moved["grpcAddress"], session_id=sid, resume_token=grant["resumeToken"])
        callers.append(second)
        await second.open()
        assert survivor.hub is not None
        (live,) = survivor.hub.live()
        restored = live.session.conversation
        assert slot_values(restored.memory[0]) == {"day": "friday", "party": 4}
        assert restored.summary == saved.summary and restored.summary_through == saved.summary_through
        second.send_text("and a high chair")
        assert (await answers(second, 1))[-1]
    finally:
        for caller in callers:
            await caller.close()
        await fleet.close()
        await store.aclose()
