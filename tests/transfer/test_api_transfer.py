"""Transfers asked through the session API, and every refusal: the call goes on at the front desk, intact."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.runtime import Pod
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import connect_redis
from agent_pod.transports import transport_metrics
from tests.support.migration import answers, events
from tests.transfer.conftest import GHOST, Desks
from voicefleet.v1 import session_pb2, session_pb2_grpc


async def ask(pod: Pod, session_id: str, body: dict[str, Any], key: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{pod.http_url}/v1/sessions/{session_id}/transfer", json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def refused(reason: str) -> float:
    return transport_metrics.TRANSFERS_TOTAL.labels(reason)._value.get()


@pytest.mark.parametrize(("secured", "policy"), [(True, "full")])
async def test_a_supervisor_transfers_a_call_through_the_api_with_the_scope_it_needs(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    async with GrpcCaller(front.grpc_address, api_key=desks.keys["caller"]) as call:
        call.send_text("hello")
        await answers(call, 1)
        body = {"target": desks.billing_name, "policy": "none", "reason": "asked for a human"}
        status, error = await ask(front, call.session_id, body)
        assert status == 401
        status, error = await ask(front, call.session_id, body, desks.keys["caller"])
        assert (status, error["error"]["code"]) == (403, "permission_denied")
        assert "sessions:transfer" in error["error"]["message"]
        status, accepted = await ask(front, call.session_id, body, desks.keys["supervisor"])
        assert status == 202
        assert accepted == {
            "sessionId": call.session_id,
            "target": desks.billing_name,
            "policy": "none",
            "state": "moving",
        }
        await call.recorder.wait(lambda _: len(call.pods) == 2, 15)
        call.send_text("who are you")
        await answers(call, 2)
        seen = desks.llm_requests("BILLING desk")[-1]
        # policy none: the billing agent knows where the call comes from, not what was said
        assert [m["role"] for m in seen] == ["system", "system", "user"]
        assert seen[1]["content"].endswith("Reason: asked for a human")
        assert seen[2]["content"] == "who are you"
        assert billing.hub is not None
        (live,) = billing.hub.live()
        assert live.session.conversation.transfers[0].trigger == "api"
        redis = connect_redis(desks.redis.url)
        try:  # the call stays its tenant's at the target
            tenant = await redis.get(
                AgentKeys("transfer", desks.billing_name).session_tenant(call.session_id)
            )
        finally:
            await redis.aclose()
        assert tenant in ("acme", b"acme")
        await call.end()


async def test_refused_transfers_leave_the_call_on_the_front_desk_intact(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    await billing.drain()  # registered, but not ready: no pod can take a call
    before = {r: refused(r) for r in ("not_allowed", "unknown_target", "no_ready_pod")}
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("hello")
        await answers(call, 1)
        sid = call.session_id

        status, error = await ask(front, sid, {"target": "sales"})
        assert (status, error["error"]["code"]) == (403, "permission_denied")
        assert "'sales' is not in spec.transfer.targets" in error["error"]["message"]
        status, error = await ask(front, sid, {"target": GHOST})
        assert (status, error["error"]["code"]) == (404, "not_found")
        assert "uses another Redis" in error["error"]["message"]
        status, error = await ask(front, sid, {"target": desks.billing_name})
        assert (status, error["error"]["code"]) == (503, "unavailable")
        assert "no ready pod" in error["error"]["message"]
        status, error = await ask(front, sid, {"target": "Not A Name"})
        assert (status, error["error"]["code"]) == (400, "invalid_argument")
        assert "target" in error["error"]["message"]
        status, error = await ask(front, "no-such-call", {"target": desks.billing_name})
        assert (status, error["error"]["code"]) == (409, "wrong_pod")
        assert {r: refused(r) - before[r] for r in before} == {
            "not_allowed": 1,
            "unknown_target": 1,
            "no_ready_pod": 1,
        }

        # the LLM's tool: a target outside the list is invalid, one without pods is refused
        call.send_text("to nowhere")
        await answers(call, 2)
        call.send_text("ghost desk please")
        await answers(call, 3)
        tools = [t for t in events(call, "tool") if t["state"] != "STARTED"]
        assert [t["state"] for t in tools] == ["INVALID_ARGUMENTS", "FAILED"]
        assert "is not one of" in tools[0]["error"]
        assert "uses another Redis" in tools[1]["error"]

        call.send_text("still there")
        assert (await answers(call, 4))[3] == "You said: still there"
        assert call.pods == ["front-0"] and not events(call, "migration_offer")
        assert front.hub is not None
        (live,) = front.hub.live()
        said = [m.content for m in live.session.conversation.messages if m.role == "user"]
        assert said == ["hello", "to nowhere", "ghost desk please", "still there"]
        assert live.session.conversation.transfers == []
        await call.end()


async def test_any_pod_of_the_agent_takes_the_request_and_hands_it_to_the_pod_of_the_call(
    desks: Desks,
) -> None:
    front = await desks.add(desks.front, "front-0")
    other = await desks.add(desks.front, "front-1")
    await desks.add(desks.billing, "billing-0")
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("hello")
        await answers(call, 1)
        status, accepted = await ask(other, call.session_id, {"target": desks.billing_name})
        assert (status, accepted["state"]) == (202, "moving")
        await call.recorder.wait(lambda _: len(call.pods) == 2, 15)
        assert call.pods == ["front-0", "billing-0"]
        await call.end()


async def test_a_call_that_never_falls_quiet_stays_where_it_is(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    await desks.add(desks.billing, "billing-0")
    stayed = refused("not_quiet")
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("tell me a story")
        await call.recorder.wait(lambda _: bool(events(call, "turn_metrics")), 10)  # the agent speaks
        status, _ = await ask(front, call.session_id, {"target": desks.billing_name})
        assert status == 202  # accepted: the move waits for a quiet moment (quietWaitSeconds: 3)
        await call.recorder.wait(lambda _: bool(events(call, "error")), 10)
        [error] = events(call, "error")
        assert "no quiet moment came" in error["message"] and not error["fatal"]
        assert refused("not_quiet") == stayed + 1
        assert not events(call, "migration_offer") and call.pods == ["front-0"]
        await answers(call, 1, within=20)  # the story goes on to its end, on the front desk
        await call.end()


async def test_the_grpc_session_service_transfers_a_call_too(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    other = await desks.add(desks.front, "front-1")
    await desks.add(desks.billing, "billing-0")
    async with GrpcCaller(front.grpc_address) as call:
        call.send_text("hello")
        await answers(call, 1)

        async def transfer(pod: Pod, target: str) -> session_pb2.TransferSessionReply:
            async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
                stub = session_pb2_grpc.SessionServiceStub(channel)
                ask = session_pb2.TransferSessionRequest(
                    session_id=call.session_id, target=target, policy="none"
                )
                reply: session_pb2.TransferSessionReply = await stub.TransferSession(ask)
                return reply

        with pytest.raises(grpc.aio.AioRpcError) as refused_here:
            await transfer(front, "sales")
        assert refused_here.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "spec.transfer.targets" in (refused_here.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await transfer(other, desks.billing_name)
        assert elsewhere.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        trailers = dict(elsewhere.value.trailing_metadata() or ())
        assert trailers["voicefleet-grpc-address"] == front.grpc_address
        reply = await transfer(front, desks.billing_name)
        assert (reply.target, reply.policy, reply.state) == (desks.billing_name, "none", "moving")
        await call.recorder.wait(lambda _: len(call.pods) == 2, 15)
        assert call.pods == ["front-0", "billing-0"]
        await call.end()
