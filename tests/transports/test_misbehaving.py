"""Bad callers next to 20 healthy ones: every healthy session completes its turns and the pod stays ready."""

from __future__ import annotations

import asyncio
import functools

import aiohttp
import grpc

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallSummary
from agent_pod.transports import transport_metrics
from tests.support.pod import synthetic_config, tone, wait_until
from voicefleet.v1 import agent_pb2, agent_pb2_grpc

HEALTHY = 20
TURNS = 2


def _start(rate: int = 16000, out: int = 16000) -> agent_pb2.ClientEvent:
    return agent_pb2.ClientEvent(
        start=agent_pb2.StartSession(
            input_format=agent_pb2.AudioFormat(sample_rate_hz=rate, channels=1),
            output_format=agent_pb2.AudioFormat(sample_rate_hz=out, channels=1),
        )
    )


def _counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


def answered(summary: CallSummary, turns: int) -> bool:
    return len(summary.agent_texts) >= turns


async def healthy_caller(address: str) -> list[str]:
    async with GrpcCaller(address) as call:
        for turn in range(1, TURNS + 1):
            await call.play(tone(16000, 0.4, silence_after=0.5))
            await call.recorder.wait(functools.partial(answered, turns=turn), 60)
        await call.end()
        summary = await call.recorder.wait(lambda s: s.ended is not None, 30)
    assert summary.errors == [], summary.errors
    return summary.agent_texts


async def raw_stream(address: str, messages: list[bytes]) -> tuple[grpc.StatusCode, str, list[bytes]]:
    """Send hand-made ClientEvent bytes (unknown fields, garbage) and collect the raw replies."""
    async with grpc.aio.insecure_channel(address) as channel:
        converse = channel.stream_stream(
            "/voicefleet.v1.VoiceAgent/Converse", request_serializer=None, response_deserializer=None
        )
        outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        for m in messages:
            outgoing.put_nowait(m)

        async def requests():
            while (item := await outgoing.get()) is not None:
                yield item

        call = converse(requests())
        replies: list[bytes] = []
        try:
            async for reply in call:
                replies.append(reply)
                event = agent_pb2.ServerEvent.FromString(reply)
                if event.WhichOneof("event") == "error" and "unknown client event" in event.error.message:
                    # the pod shrugged the unknown message off; the session still answers text
                    text = agent_pb2.ClientEvent(text=agent_pb2.TextInput(text="hello"))
                    outgoing.put_nowait(text.SerializeToString())
                if event.WhichOneof("event") == "agent_text" and event.agent_text.final:
                    outgoing.put_nowait(agent_pb2.ClientEvent(end=agent_pb2.EndSession()).SerializeToString())
            return grpc.StatusCode.OK, "", replies
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", replies


async def oversized_message(address: str) -> grpc.StatusCode:
    async with GrpcCaller(address) as call:
        call.send_audio(b"\x00" * (300 * 1024))
        summary = await call.recorder.wait(lambda s: s.ended is not None, 30)
    assert "stream closed" in (summary.ended or "")
    assert call.status is not None
    return call.status


async def slow_reader(pod, address: str) -> str:
    """Asks for a long answer at 48 kHz and never reads it."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    ) as channel:
        messages = [
            _start(16000, 48000),
            agent_pb2.ClientEvent(text=agent_pb2.TextInput(text="tell me a story")),
        ]
        call = agent_pb2_grpc.VoiceAgentStub(channel).Converse(iter(messages))
        metadata = dict(await call.initial_metadata())
        session_id = metadata["voicefleet-session-id"]
        hub = pod.hub
        await wait_until(
            lambda: session_id not in {s.id for s in hub.live()}, 60, "the slow reader to be cut off"
        )
        call.cancel()
        return session_id


async def test_bad_callers_never_hurt_healthy_sessions(pod_factory):
    pod = await pod_factory(synthetic_config(), slow_reader_seconds=2.0)
    address = pod.grpc_address
    dropped_before = _counter(transport_metrics.DROPPED_FRAMES_TOTAL, transport="grpc")
    slow_before = _counter(transport_metrics.SESSIONS_TOTAL, transport="grpc", reason="slow_reader")

    async def malformed_sdp() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as http:
            for body in ("garbage", "v=0\r\nm=audio 9 RTP/AVP 0\r\nc=IN IP4", "m=audio\r\n" * 1000):
                async with http.post(
                    pod.http_url + "/v1/webrtc", data=body, headers={"Content-Type": "application/sdp"}
                ) as response:
                    statuses.append(response.status)
        return statuses

    async def wrong_rate() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(address) as channel:
            call = agent_pb2_grpc.VoiceAgentStub(channel).Converse(iter([_start(rate=11025)]))
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    async def odd_chunks() -> list[str]:
        async with GrpcCaller(address) as call:
            for size in (3, 641, 32002 + 2):
                call.send_audio(b"\x01" * size)
            await call.recorder.wait(lambda s: len(s.errors) >= 3, 30)
            call.send_text("hello")
            summary = await call.recorder.wait(lambda s: bool(s.agent_texts), 30)
            await call.end()
        return summary.errors

    unknown = _start().SerializeToString(), b"\x7a\x03abc"  # field 15, never defined: an unknown message
    garbage = _start().SerializeToString(), b"\xff\xff\xff\xff"

    results = await asyncio.gather(
        *(healthy_caller(address) for _ in range(HEALTHY)),
        malformed_sdp(),
        wrong_rate(),
        odd_chunks(),
        oversized_message(address),
        raw_stream(address, list(unknown)),
        raw_stream(address, list(garbage)),
        slow_reader(pod, address),
    )
    healthy, (sdp_statuses, rate_status, odd_errors, oversized, unknown_result, garbage_result, slow_id) = (
        results[:HEALTHY],
        results[HEALTHY:],
    )
    assert all(len(texts) == TURNS for texts in healthy)
    assert sdp_statuses == [400, 400, 400]
    assert rate_status == grpc.StatusCode.INVALID_ARGUMENT
    assert len(odd_errors) == 3 and all("INVALID_ARGUMENT" in e for e in odd_errors)
    assert oversized == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert unknown_result[0] == grpc.StatusCode.OK, unknown_result
    assert garbage_result[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not decode a ClientEvent" in garbage_result[1]
    assert slow_id
    assert _counter(transport_metrics.DROPPED_FRAMES_TOTAL, transport="grpc") > dropped_before
    assert (
        _counter(transport_metrics.SESSIONS_TOTAL, transport="grpc", reason="slow_reader") == slow_before + 1
    )
    assert pod.health.ready
    async with aiohttp.ClientSession() as http, http.get(pod.http_url + "/readyz") as response:
        assert response.status == 200
    await wait_until(lambda: pod.hub.live_sessions == 0, 30, "every session to end")
