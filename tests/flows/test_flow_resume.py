"""A call in a flow survives its pod: two real pods on a real Redis, a gRPC caller, the owner crashes,
the call is resumed on the other pod and goes on in the same node, with its prompt, LLM and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.config import AgentConfig
from tests.flows.flowspec import BILLING_PROMPT, receptionist_flow, scripted
from tests.support.migration import Fleet, answers
from tests.support.redis import RedisServer

RECEPTION_RULES: list[dict[str, Any]] = [
    {"match": "bill", "say": "Let me get billing.", "tool": "go_to_billing", "arguments": {}}
]
BILLING_RULES: list[dict[str, Any]] = [
    {"match": "reception", "tool": "back_to_reception", "arguments": {}},
    {"match": ".", "reply": "Billing here. {system_prompt}"},
]
TOOLS = [
    {"name": name, "description": f"{name}.", "endpoint": {"url": "http://127.0.0.1:9/"}}
    for name in ("book_table", "refund")
]


async def test_a_resumed_call_goes_on_in_its_node(tmp_path: Path, redis_server: RedisServer) -> None:
    fleet = Fleet(tmp_path, redis_server)
    base = fleet.config.dump()
    base["pipeline"]["llm"] = scripted(RECEPTION_RULES)
    flow = receptionist_flow(billing={"context": "none", "llm": scripted(BILLING_RULES)})
    fleet.config = AgentConfig.model_validate({**base, "tools": TOOLS, "flow": flow})
    callers: list[GrpcCaller] = []
    try:
        a = await fleet.add("pod-a")
        await fleet.add("pod-b")
        async with aiohttp.ClientSession() as http, http.post(a.http_url + "/v1/sessions", json={}) as r:
            assert r.status == 201
            grant = await r.json()
        first = GrpcCaller(
            grant["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
        )
        callers.append(first)
        await first.open()
        first.send_text("a question about my bill")
        [handoff] = await answers(first, 1)
        assert handoff.startswith("Let me get billing. Billing here. You are the billing specialist.")

        owner = grant["pod"]
        first.drop()
        await fleet.crash(owner)
        survivor = next(iter(fleet.pods.values()))
        resume = f"{survivor.http_url}/v1/sessions/{grant['sessionId']}/resume"
        async with (
            aiohttp.ClientSession() as http,
            http.post(resume, json={"resumeToken": grant["resumeToken"]}) as r,
        ):
            assert r.status == 200
            moved = await r.json()
        assert moved["pod"] != owner
        second = GrpcCaller(
            moved["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
        )
        callers.append(second)
        await second.open()
        second.send_text("one more thing")
        texts = await answers(second, 1)
        # Billing's own LLM answered, with billing's prompt: the node came back from Redis.
        assert texts[-1].startswith(f"Billing here. {BILLING_PROMPT}")
        # back_to_reception is a function only the billing node offers.
        second.send_text("back to reception please")
        await answers(second, 2)
        assert survivor.hub is not None
        (live,) = survivor.hub.live()
        flow_state = live.session.conversation.flow
        assert flow_state is not None and flow_state.node == "reception"
        assert [(m.seq, m.from_node, m.to_node) for m in flow_state.moves] == [
            (1, "reception", "billing"),
            (2, "billing", "reception"),
        ]
    finally:
        for caller in callers:
            await caller.close()
        await fleet.close()
