"""SIGTERM on a `voicefleet pod` subprocess with live sessions: drain, refuse, serve, exit 0."""

from __future__ import annotations

import json

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.webrtc_client import WebRTCCaller
from tests.support.pod import synthetic_config
from tests.support.wait import async_wait_for
from voicefleet.v1 import agent_pb2, agent_pb2_grpc


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status


async def _refusal(address: str) -> grpc.aio.AioRpcError:
    start = agent_pb2.StartSession(input_format=agent_pb2.AudioFormat(sample_rate_hz=16000, channels=1))
    async with grpc.aio.insecure_channel(address) as channel:
        call = agent_pb2_grpc.VoiceAgentStub(channel).Converse(iter([agent_pb2.ClientEvent(start=start)]))
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc
    raise AssertionError("a draining pod accepted a new session")


async def test_sigterm_drains_and_exits_after_the_last_session(pod_process_factory):
    pod = await pod_process_factory(synthetic_config(session={"drainTimeoutSeconds": 120}))
    async with GrpcCaller(pod.grpc_address) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)

        pod.terminate()
        await async_wait_for(
            lambda: _not(_status(pod.http_url + "/readyz"), 200), timeout=10, what="readiness to turn off"
        )
        async with aiohttp.ClientSession() as http, http.get(pod.http_url + "/healthz") as response:
            assert response.status == 200, "a draining pod stays alive"
            assert (await response.json())["draining"] is True
        async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

        refused = await _refusal(pod.grpc_address)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "draining" in refused.details()
        assert dict(refused.trailing_metadata() or ())["retry-after"] == "1"
        try:
            async with WebRTCCaller(pod.http_url + "/v1/webrtc"):
                raise AssertionError("a draining pod answered a WebRTC offer")
        except ConnectionError as exc:
            assert "503" in str(exc) and "draining" in str(exc)

        call.send_text("what is the weather")
        summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= 2, 30)
        assert summary.transcripts[-1] == "what is the weather", "the live session is still served"
        assert pod.proc is not None and pod.proc.returncode is None
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 30)
    assert await pod.wait_exit(30) == 0
    assert f"talk to it:  {pod.http_url}/" in pod.log()
    records = [json.loads(line) for line in pod.log().splitlines() if line.startswith("{")]
    assert any(r.get("message") == "draining" for r in records)
    assert any(r.get("session_id") == call.session_id for r in records), "logs carry the session id"


async def test_drain_deadline_closes_sessions_that_never_end(pod_process_factory):
    pod = await pod_process_factory(synthetic_config(session={"drainTimeoutSeconds": 2}))
    async with GrpcCaller(pod.grpc_address) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
        pod.terminate()
        summary = await call.recorder.wait(lambda s: s.ended is not None, 30)
        assert summary.ended == "drain_deadline"
    assert await pod.wait_exit(30) == 0


async def _not(status, value: int) -> bool:
    try:
        return await status != value
    except aiohttp.ClientError:
        return False


async def test_prestop_drain_command_starts_draining_before_sigterm(pod_process_factory):
    """The preStop hook (`voicefleet drain`) turns readiness off while live sessions go on."""
    import asyncio
    import sys

    pod = await pod_process_factory(synthetic_config(session={"drainTimeoutSeconds": 120}))
    port = int(pod.http_url.rsplit(":", 1)[1])
    async with GrpcCaller(pod.grpc_address) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent_pod.cli", "drain", "--port", str(port)
        )
        assert await proc.wait() == 0
        await async_wait_for(
            lambda: _not(_status(pod.http_url + "/readyz"), 200), timeout=10, what="readiness to turn off"
        )
        refused = await _refusal(pod.grpc_address)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        call.send_text("still there")
        summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= 2, 30)
        assert summary.transcripts[-1] == "still there"
        assert pod.proc is not None and pod.proc.returncode is None, (
            "preStop drains; it does not stop the pod"
        )
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 30)
    pod.terminate()
    assert await pod.wait_exit(30) == 0
