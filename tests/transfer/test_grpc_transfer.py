"""A live gRPC call handed from the front desk to the billing agent (real Redis, real gRPC, two agents)."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import REGISTRY

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import PinRecord
from agent_pod.sessions.redis_client import connect_redis
from agent_pod.transports import transport_metrics
from tests.support.migration import answers, events
from tests.support.pod import wait_until
from tests.transfer.conftest import ANNOUNCE, BILLING_PROMPT, FRONT_PROMPT, Desks


async def resume(http_url: str, session_id: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{http_url}/v1/sessions/{session_id}/resume", json={"resumeToken": token}) as resp,
    ):
        return resp.status


def transfer_count() -> float:
    return REGISTRY.get_sample_value("voicefleet_transfer_seconds_count") or 0.0


async def pin(desks: Desks, agent: str, session_id: str) -> PinRecord | None:
    redis = connect_redis(desks.redis.url)
    try:
        raw = await redis.hgetall(AgentKeys("transfer", agent).pin(session_id))
        return PinRecord.from_mapping(raw) if raw else None
    finally:
        await redis.aclose()


async def test_the_llm_transfers_the_call_with_its_history_to_the_billing_agent(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    timed, moved_before = (
        transfer_count(),
        transport_metrics.TRANSFERS_TOTAL.labels("transferred")._value.get(),
    )
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("hello")
        assert await answers(call, 1) == ["You said: hello"]
        call.send_text("I have a billing question")
        # the announcement is the front desk's last words, then the stream follows to the billing pod
        assert (await answers(call, 2))[1] == ANNOUNCE
        await call.recorder.wait(lambda _: len(call.pods) == 2, 15)
        assert call.pods == ["front-0", "billing-0"]
        # the move waited for the announcement: its final text (sent once its audio played) came first
        kinds = [(k, f.get("final"), f.get("text"), f.get("played_text")) for _, k, f in call.recorder.events]
        announced = kinds.index(("agent_text", True, ANNOUNCE, ANNOUNCE))
        assert announced < [k[0] for k in kinds].index("migration_offer")
        started = events(call, "session_started")[-1]
        assert started["migrated"] and started["resumed"]
        assert started["resume_token"]  # the billing agent's own token (the agents' keys differ)
        await call.recorder.wait(lambda _: bool(events(call, "migration_completed")), 10)
        assert events(call, "migration_completed")[0]["from_pod"] == "front-0"
        assert transfer_count() == timed + 1  # decision -> the billing pod listens, measured there
        counted = transport_metrics.TRANSFERS_TOTAL.labels("transferred")._value.get
        await wait_until(lambda: counted() == moved_before + 1, 5, "the front desk to count the transfer")

        call.send_text("what do I owe")
        assert (await answers(call, 3))[2] == "You said: what do I owe"
        seen = desks.llm_requests("BILLING desk")[-1]
        assert seen[0] == {"role": "system", "content": BILLING_PROMPT}
        said = [m["content"] for m in seen if m["role"] == "user"]
        assert said == ["hello", "I have a billing question", "what do I owe"]
        notes = [m["content"] for m in seen[1:] if m["role"] == "system"]
        assert notes == [
            f"This call was transferred to you from the {desks.front_name} agent. Reason: invoice question"
        ]
        assert not any(FRONT_PROMPT in str(m.get("content")) for m in seen)
        # the transfer tool's round stays paired with its result in the history
        (tool_call,) = [c for m in seen for c in m.get("tool_calls") or []]
        assert tool_call["function"]["name"] == "transfer_call"
        assert any(m["role"] == "tool" and m["tool_call_id"] == tool_call["id"] for m in seen)

        # the tool is offered where spec.transfer is set, and only there
        tools: dict[str, list[str]] = {"FRONT desk": [], "BILLING desk": []}
        for sent in desks.server.requests:
            for marker, names in tools.items():
                if marker in str(sent.body.get("messages")):
                    names += [t["function"]["name"] for t in sent.body.get("tools") or []]
        assert set(tools["FRONT desk"]) == {"transfer_call"} and tools["BILLING desk"] == []
        assert front.hub is not None and front.hub.live_sessions == 0
        assert billing.hub is not None
        (live,) = billing.hub.live()
        (record,) = live.session.conversation.transfers
        assert (record.from_agent, record.to_agent, record.trigger, record.policy) == (
            desks.front_name,
            desks.billing_name,
            "tool",
            "full",
        )
        # the caller resumes through the billing agent with the token billing issued (not the front desk's)
        token, old_token = started["resume_token"], events(call, "session_started")[0]["resume_token"]
        assert await resume(billing.http_url, call.session_id, old_token) == 401
        assert await resume(billing.http_url, call.session_id, token) == 200
        moved = await pin(desks, desks.billing_name, call.session_id)
        assert moved is not None and (moved.pod, moved.state) == ("billing-0", "live")
        assert await pin(desks, desks.front_name, call.session_id) is None  # the front desk let it go
        await call.end()


@pytest.mark.parametrize("policy", ["summary"])
async def test_a_summary_policy_gives_the_target_a_summary_instead_of_the_history(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    await desks.add(desks.billing, "billing-0")
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("my name is Ada")
        await answers(call, 1)
        call.send_text("billing please")
        await call.recorder.wait(lambda _: len(call.pods) == 2, 15)
        call.send_text("and now")
        await answers(call, 3)
        seen = desks.llm_requests("BILLING desk")[-1]
        assert [m["content"] for m in seen if m["role"] == "user"] == ["and now"]
        (note,) = [m["content"] for m in seen[1:] if m["role"] == "system"]
        # the wire server's unscripted answer echoes the transcript it was asked to summarise
        assert "Summary of the call so far: You said: user: my name is Ada" in note
        asked = desks.llm_requests("Summarise the conversation")
        assert len(asked) == 1
        await call.end()
