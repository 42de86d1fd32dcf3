"""The session API over real HTTP (aiohttp) and real gRPC on loopback, backed by RedisDirectory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import ClientSession, web

from agent_pod.config import AgentConfig, CorsSpec
from agent_pod.sessions.api import add_session_service, session_routes
from agent_pod.sessions.factory import build_gate
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.transports.cors import CorsPolicy
from agent_pod.transports.http_guard import HttpLimits, body_guard
from tests.support.redis import RedisServer
from voicefleet.v1 import session_pb2, session_pb2_grpc

from .helpers import PROMPT, Fleet, conversation

Stub = session_pb2_grpc.SessionServiceStub


@pytest.fixture
async def api(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[Fleet, str, session_pb2_grpc.SessionServiceStub]]:
    fleet = Fleet(redis_server.url)
    front = await fleet.add("front")
    await fleet.add("back")
    limits = HttpLimits()  # the pod's own body guard bounds the API's bodies (as build_app sets it up)
    app = web.Application(client_max_size=limits.max_body_bytes, middlewares=[body_guard(limits)])
    gate = build_gate(AgentConfig(), front)
    app.add_routes(session_routes(front, gate, CorsPolicy(CorsSpec())))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = grpc.aio.server()
    add_session_service(server, front, gate)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        yield fleet, f"http://127.0.0.1:{port}", session_pb2_grpc.SessionServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(None)
        await runner.cleanup()
        await fleet.close()


async def test_http_create_and_resume(api) -> None:
    fleet, url, _ = api
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/sessions", json={"metadata": {"caller": "+15550100"}}) as r:
            assert r.status == 201
            grant = await r.json()
        assert set(grant) == {
            "sessionId",
            "resumeToken",
            "pod",
            "grpcAddress",
            "webrtcUrl",
            "resumed",
            "tokenExpiresUnix",
        }
        owner: RedisDirectory = fleet.pods[grant["pod"]]
        assert grant["grpcAddress"] == owner.identity.grpc_address and not grant["resumed"]
        await owner.admit(grant["sessionId"], grant["resumeToken"], PROMPT)
        await owner.snapshot(conversation(grant["sessionId"], 1))
        resume = f"{url}/v1/sessions/{grant['sessionId']}/resume"
        async with http.post(resume, json={"resumeToken": grant["resumeToken"]}) as r:
            assert r.status == 200
            again = await r.json()
        assert again["pod"] == grant["pod"] and again["resumed"]
        headers = {"Authorization": f"Bearer {grant['resumeToken']}"}
        async with http.post(resume, headers=headers) as r:
            assert r.status == 200


async def test_http_errors_are_json_with_clear_messages(api) -> None:
    fleet, url, _ = api
    async with ClientSession() as http:
        async with http.post(f"{url}/v1/sessions", json={}) as r:
            grant = await r.json()
        resume = f"{url}/v1/sessions/{grant['sessionId']}/resume"
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (f"{url}/v1/sessions", {"data": b"{not json"}, 400, "invalid request"),
            (f"{url}/v1/sessions", {"json": {"metadata": {"k": 5}}}, 400, "metadata"),
            (f"{url}/v1/sessions", {"json": {"unknown": 1}}, 400, "unknown"),
            (f"{url}/v1/sessions", {"data": b"x" * 70_000}, 413, "larger"),
            (f"{url}/v1/sessions", {"json": {"audioSocket": True}}, 400, "AudioSocket"),
            (resume, {"json": {}}, 401, "resume token is required"),
            (resume, {"json": {"resumeToken": "v1.1.forged"}}, 401, "malformed"),
            (resume, {"json": {"resumeToken": "v1.1." + "A" * 43}}, 401, "does not match"),
            (f"{url}/v1/sessions/bad$id/resume", {"json": {"resumeToken": "x"}}, 400, "session id"),
        ]
        for target, kwargs, status, text in cases:
            async with http.post(target, **kwargs) as r:
                assert r.status == status, (target, kwargs)
                body = await r.json()
                assert text in body["error"]["message"], body
        for pod in fleet.pods.values():
            await pod.drain()
        async with http.post(f"{url}/v1/sessions", json={}) as r:
            assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "unavailable"


async def test_grpc_session_service(api) -> None:
    fleet, _, stub = api
    grant = await stub.CreateSession(session_pb2.CreateSessionRequest(metadata={"caller": "x"}))
    assert grant.pod in fleet.pods and grant.resume_token and grant.token_expires_unix > 0
    owner = fleet.pods[grant.pod]
    await owner.admit(grant.session_id, grant.resume_token, PROMPT)
    again = await stub.ResumeSession(
        session_pb2.ResumeSessionRequest(session_id=grant.session_id, resume_token=grant.resume_token)
    )
    assert again.pod == grant.pod and again.resumed
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ResumeSession(session_pb2.ResumeSessionRequest(session_id=grant.session_id))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ResumeSession(session_pb2.ResumeSessionRequest(session_id="", resume_token="x"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for pod in fleet.pods.values():
        await pod.drain()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateSession(session_pb2.CreateSessionRequest())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(refused.value.trailing_metadata())["retry-after"] == "2"
