"""Call transfer between two VoiceAgents on the real node: the front desk hands live calls to billing.

Both agents are applied by the operator (chart Redis, shared), run the project's image and the
scripted LLM. A caller on the host creates its session through the desk's Service, talks to the desk
pod's IP, and is transferred twice over: by the desk LLM's built-in ``transfer_call`` tool, and by the
session API (gRPC ``TransferSession``). Each time the caller's stream follows to a billing pod, the
billing agent answers with its own script, and the conversation came along.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from agent_pod.client.grpc_client import GrpcCaller
from tests.support.migration import answers, events
from tests.support.node import Release
from voicefleet.v1 import session_pb2, session_pb2_grpc

pytestmark = pytest.mark.e2e

DESK, BILLING = "desk", "billing"
ANNOUNCE = "Transferring you to billing."
DESK_RULES = [
    {
        "match": "invoice",
        "tool": "transfer_call",
        "arguments": {"target": BILLING, "reason": "invoice question"},
    }
]
BILLING_RULES = [{"match": "owe", "reply": "Billing here: you owe 42 euros."}]


def agent_spec(rules: list[dict[str, Any]], prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "replicas": 1,
        "autoscaling": {"enabled": False, "sessionsPerPod": 20},
        "pipeline": {
            "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": 300},
            "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
            "llm": {"provider": "scripted", "options": {"rules": json.dumps(rules)}},
            "tts": {"provider": "synthetic", "options": {"ms_per_char": "2"}},
            "compliance": {"audit": False},
        },
        "prompt": {"inline": prompt, "version": "v1"},
        "transport": {"grpc": {"enabled": True, "port": 50051}, "webrtc": {"enabled": False}},
        "session": {"drainTimeoutSeconds": 60, "idleTimeoutSeconds": 120, "maxDurationSeconds": 1800},
        **extra,
    }


@pytest.fixture(scope="module")
def desks(fleet_release: Release) -> Iterator[str]:
    """Both agents serving; yields the desk Service's gRPC address (kube-proxy picks the pod)."""
    release = fleet_release
    release.apply_agent(BILLING, agent_spec(BILLING_RULES, "You are the billing desk."))
    transfer = {"targets": [BILLING], "contextPolicy": "full", "announce": ANNOUNCE}
    release.apply_agent(DESK, agent_spec(DESK_RULES, "You are the front desk.", transfer=transfer))
    release.wait_agent_serving(BILLING, 1)
    release.wait_agent_serving(DESK, 1)
    yield release.service_address(DESK, "grpc")
    for name in (DESK, BILLING):
        release.cluster.kubectl("delete", "voiceagent", name, "-n", release.namespace, check=False)


async def create_session(service: str) -> session_pb2.SessionGrant:
    async with grpc.aio.insecure_channel(service) as channel:
        grant: session_pb2.SessionGrant = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(), timeout=20
        )
        return grant


async def follows_to_billing(call: GrpcCaller, release: Release, said: int) -> None:
    """The stream moved to a billing pod, which answers with its own script and knows the call so far."""
    await call.recorder.wait(lambda _: len(call.pods) == 2, 30)
    assert call.pods[0] in release.agent_pods(DESK) and call.pods[1] in release.agent_pods(BILLING)
    started = events(call, "session_started")[-1]
    assert started["migrated"] and started["resumed"]
    call.send_text("what do I owe")
    assert (await answers(call, said + 1, within=20))[said] == "Billing here: you owe 42 euros."


@pytest.mark.timeout(900)
async def test_the_desk_transfers_live_calls_to_billing(fleet_release: Release, desks: str) -> None:
    release = fleet_release
    # By the desk LLM's tool: the announcement is the desk's last words, then the stream follows.
    grant = await create_session(desks)
    async with GrpcCaller(
        grant.grpc_address, session_id=grant.session_id, resume_token=grant.resume_token
    ) as call:
        call.send_text("hello")
        assert await answers(call, 1, within=20) == ["Hello! How can I help you today?"]
        call.send_text("a question about my invoice")
        assert (await answers(call, 2, within=20))[1] == ANNOUNCE
        await follows_to_billing(call, release, 2)

    # By the session API, on the pod that serves the call.
    grant = await create_session(desks)
    async with GrpcCaller(
        grant.grpc_address, session_id=grant.session_id, resume_token=grant.resume_token
    ) as call:
        call.send_text("hello")
        await answers(call, 1, within=20)
        sid = grant.session_id
        async with grpc.aio.insecure_channel(grant.grpc_address) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.TransferSession(
                    session_pb2.TransferSessionRequest(session_id=sid, target="sales"),
                    timeout=20,
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            reply = await stub.TransferSession(
                session_pb2.TransferSessionRequest(
                    session_id=grant.session_id, target=BILLING, policy="none"
                ),
                timeout=20,
            )
            assert reply.state == "moving"
        await follows_to_billing(call, release, 1)
