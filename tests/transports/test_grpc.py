"""gRPC transport end to end on loopback: synthetic and real speech, errors, health, reflection, resume."""

from __future__ import annotations

import functools
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from agent_pod.client.caller_audio import read_wav, speech_ends
from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallSummary
from agent_pod.runtime import Pod
from agent_pod.settings import PodSettings
from agent_pod.transports.playout_clock import PlayoutClock
from tests.support.pod import offline_config, pod_ports, synthetic_config, tone, wait_until
from voicefleet.v1 import agent_pb2, agent_pb2_grpc


async def test_synthetic_call_hears_answers_and_streams_audio(pod_factory):
    pod = await pod_factory(synthetic_config(transcript="hello there"))
    async with GrpcCaller(pod.grpc_address, sample_rate=16000, output_sample_rate=24000) as call:
        started = call.recorder.events[0]
        assert started[1] == "session_started"
        assert started[2]["pod"] == pod.settings.pod_name
        assert started[2]["prompt_version"] == pod.config.prompt_id
        assert started[2]["output_format"]["sample_rate_hz"] == 24000
        assert call.recorder.summary.resume_token  # a new session gets its token in the initial metadata
        await call.play(tone(16000, 0.6, silence_after=0.8), speech_ends=[30])
        summary = await call.recorder.wait(lambda s: bool(s.agent_texts) and s.audible_frames >= 10, 15)
        assert summary.transcripts == ["hello there"]
        assert summary.agent_texts[0].startswith("Hello")
        assert summary.turn_metrics and summary.turn_metrics[0]["response_latency_ms"] > 0
        assert summary.latencies, "the first audible agent frame answered the marked end of speech"
        await call.end()
        summary = await call.recorder.wait(lambda s: s.ended is not None, 10)
    assert summary.ended == "client_ended"
    assert summary.errors == []
    assert pod.hub is not None and pod.hub.live_sessions == 0


async def test_text_input_and_bad_chunks_are_reported_not_fatal(pod_factory):
    pod = await pod_factory()
    async with GrpcCaller(pod.grpc_address) as call:
        call.send_audio(b"\x00" * 321)  # odd byte count
        call.send_audio(b"\x00" * 40000)  # 1.25 s at 16 kHz
        call.send_raw(agent_pb2.ClientEvent())  # no event set: what an unknown (newer) message parses to
        call.send_raw(agent_pb2.ClientEvent(start=agent_pb2.StartSession()))
        await call.recorder.wait(lambda s: len(s.errors) >= 4, 10)
        call.send_text("what is the weather")
        summary = await call.recorder.wait(lambda s: bool(s.agent_texts), 10)
        assert summary.transcripts == ["what is the weather"]
        assert any("even number of bytes" in e for e in summary.errors)
        assert any("at most 1 s" in e for e in summary.errors)
        assert any("unknown client event" in e for e in summary.errors)
        assert any("only valid as the first message" in e for e in summary.errors)
        assert all(e.startswith("INVALID_ARGUMENT") for e in summary.errors)
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 10)


async def _converse_status(address: str, messages: list[agent_pb2.ClientEvent]) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        call = agent_pb2_grpc.VoiceAgentStub(channel).Converse(iter(messages))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        return info.value


async def test_stream_must_start_with_a_valid_start_session(pod_factory):
    pod = await pod_factory()
    fmt = agent_pb2.AudioFormat
    err = await _converse_status(
        pod.grpc_address, [agent_pb2.ClientEvent(text=agent_pb2.TextInput(text="hi"))]
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message must be StartSession" in err.details()
    start = agent_pb2.StartSession(input_format=fmt(sample_rate_hz=44100, channels=1))
    err = await _converse_status(pod.grpc_address, [agent_pb2.ClientEvent(start=start)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "44100" in err.details()
    start = agent_pb2.StartSession(input_format=fmt(sample_rate_hz=16000, channels=2))
    err = await _converse_status(pod.grpc_address, [agent_pb2.ClientEvent(start=start)])
    assert "mono" in err.details()
    start = agent_pb2.StartSession(
        session_id="abc", resume_token="forged", input_format=fmt(sample_rate_hz=16000)
    )
    err = await _converse_status(pod.grpc_address, [agent_pb2.ClientEvent(start=start)])
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    start = agent_pb2.StartSession(input_format=fmt(sample_rate_hz=16000), metadata={"k": "v" * 1025})
    err = await _converse_status(pod.grpc_address, [agent_pb2.ClientEvent(start=start)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in err.details()


async def test_an_unplaced_sessions_metadata_comes_with_its_start(pod_factory):
    pod = await pod_factory(synthetic_config(transcript="hello there"))
    async with GrpcCaller(pod.grpc_address, sample_rate=16000, metadata={"region": "eu"}) as call:
        live = pod.hub.find(call.recorder.events[0][2]["session_id"])
        # what routing (knowledge bases, partitions) and the records read
        assert live is not None and live.session.conversation.metadata == {"region": "eu"}
        await call.end()


async def test_health_and_reflection_are_served(pod_factory):
    pod = await pod_factory()
    async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "voicefleet.v1.VoiceAgent"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            break
    assert {"voicefleet.v1.VoiceAgent", "voicefleet.v1.SessionService", "grpc.health.v1.Health"} <= names


async def test_a_dropped_stream_resumes_with_its_history(pod_factory):
    pod = await pod_factory()
    first = GrpcCaller(pod.grpc_address)
    await first.open()
    first.send_text("what is the weather")
    await first.recorder.wait(lambda s: bool(s.agent_texts), 10)
    session_id, token = first.session_id, first.recorder.summary.resume_token
    first.drop()  # the network went away: no EndSession
    await first.close()
    hub = pod.hub
    assert hub is not None
    # Until the pod has seen the stream go, the call counts as connected there (a resume is refused
    # with a retry-after, as a real client would retry).
    await wait_until(lambda: hub.live_sessions == 0, 10, "the pod to notice the dropped stream")

    async with GrpcCaller(pod.grpc_address, session_id=session_id, resume_token=token or "") as again:
        started = again.recorder.events[0][2]
        assert started["session_id"] == session_id
        assert started["resumed"] is True
        assert started["restored_turns"] == 1
        await again.end()
        await again.recorder.wait(lambda s: s.ended is not None, 10)


async def test_real_speech_through_the_offline_pipeline(pod_factory, hello_wav):
    """espeak-ng "hello" -> silero VAD -> pocketsphinx -> scripted LLM -> espeak-ng TTS, over gRPC."""
    pod = await pod_factory(offline_config())
    async with GrpcCaller(pod.grpc_address, sample_rate=16000) as call:
        pcm = read_wav(hello_wav, 16000)
        await call.play(pcm, speech_ends(pcm, 16000))
        summary = await call.recorder.wait(lambda s: bool(s.agent_texts) and s.audible_frames >= 10, 60)
        assert "hello" in summary.transcripts[0].lower()
        assert summary.agent_texts[0].startswith("Hello")
        assert summary.peak_level > 1000, "espeak's answer came back as real audio"
        await call.end()


def _missed_ticks(outcome: str) -> float:
    name = "voicefleet_transport_playout_missed_ticks_total"
    return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0


async def test_a_stalled_loop_is_made_good_not_lost(pod_factory):
    """A pause of the pod's loop (a collector pass, a slow callback) must not push the rest of the
    agent's speech later: the missed ticks' frames go out at once, and the stream stays on time."""
    pod = await pod_factory(synthetic_config())
    async with GrpcCaller(pod.grpc_address) as call:
        call.send_text("tell me a story")
        await call.recorder.wait(lambda s: s.audible_frames >= 5, 15)
        caught_up = _missed_ticks("caught_up")
        frames_before = call.recorder.summary.audio_frames
        # The stall under test (not a wait): blocks the loop the pod and the caller share for
        # 3.5 ticks (at least 2.5 past a deadline), inside what is made good (5 ticks).
        time.sleep(0.07)  # noqa: ASYNC251
        summary = await call.recorder.wait(lambda s: s.audio_frames >= frames_before + 4, 5)
        assert _missed_ticks("caught_up") >= caught_up + 2
        assert summary.ended is None and summary.errors == []
        await call.end()


def answered(summary: CallSummary, turns: int) -> bool:
    return len(summary.turn_metrics) >= turns


async def test_a_turns_first_frame_does_not_wait_for_the_playout_tick():
    """With a 500 ms playout tick, waiting for the tick would cost each turn 0-500 ms; the first
    frame of each answer is pulled the moment it exists instead."""
    settings = PodSettings(bind_host="127.0.0.1", pod_name="slow-tick", log_format="text")
    pod = Pod(settings, synthetic_config(), pod_ports())
    pod.clock = PlayoutClock(frame_ms=500)
    await pod.start()
    try:
        async with GrpcCaller(pod.grpc_address) as call:
            for turn in range(1, 4):
                call.send_text("hello")  # a typed turn also interrupts the answer still playing
                summary = await call.recorder.wait(functools.partial(answered, turns=turn), 10)
            latencies = [m["response_latency_ms"] for m in summary.turn_metrics]
            assert all(0 < ms < 150 for ms in latencies), latencies
            # The frames after the first keep the tick's cadence: one per 500 ms, not a burst.
            frames = summary.audio_frames
            await call.recorder.wait(lambda s: s.audio_frames >= frames + 2, 5)
            assert call.recorder.summary.audio_frames <= frames + 3
            await call.end()
    finally:
        await pod.stop()
