"""What one caller can make a pod do is bounded: audio faster than real time, endless speech, huge or
piled-up text and long conversations, each next to healthy callers of the same pod (real gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import Any

import aiohttp
import grpc

from agent_pod.client.caller_audio import frames
from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallSummary
from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.conversation import HISTORY_TRIMMED
from agent_pod.pipeline.input_limits import MAX_QUEUED_TURNS
from agent_pod.transports import transport_metrics
from agent_pod.transports.audio_budget import FLOOD_SECONDS
from tests.support.pod import synthetic_config, tone, wait_until

RATE = 16000
BYTES_PER_SECOND = RATE * 2  # the energy VAD (and so the STT chain) runs at 16 kHz


def _counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


def answered(summary: CallSummary, turns: int) -> bool:
    return len(summary.agent_texts) >= turns


class HeldAudio:
    """The most caller audio each session held for speech recognition, sampled while callers talk."""

    def __init__(self, pod) -> None:
        self.pod = pod
        self.most: dict[str, int] = {}
        self._task = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        while True:
            for live in self.pod.hub.live():
                held = live.session.held_audio_bytes
                self.most[live.id] = max(self.most.get(live.id, 0), held)
            await asyncio.sleep(0.005)  # a sampling period, not synchronisation

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class LoopLag:
    """The longest the pod's event loop (the test's: the pod runs in-process) was late for a timer."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.monotonic() - before - 0.01)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def prebuffering_caller(address: str) -> CallSummary:
    """A healthy caller that sends its first turn at once (a client buffering 0.9 s) and then paces."""
    async with GrpcCaller(address) as call:
        for chunk in frames(tone(RATE, 0.4, silence_after=0.5), RATE):
            call.send_audio(chunk)
        await call.recorder.wait(functools.partial(answered, turns=1), 30)
        await call.play(tone(RATE, 0.4, silence_after=0.5))
        await call.recorder.wait(functools.partial(answered, turns=2), 30)
        await call.end()
        return await call.recorder.wait(lambda s: s.ended is not None, 30)


async def endless_speaker(address: str, seconds: float) -> tuple[str, CallSummary]:
    """Speaks (a tone) without pause at real time."""
    async with GrpcCaller(address) as call:
        await call.play(tone(RATE, seconds))
        summary = await call.recorder.wait(lambda s: len(s.transcripts) >= int(seconds) - 1, 30)
        await call.end()
        return call.session_id, summary


async def flooder(address: str, seconds: float) -> tuple[str, CallSummary, tuple[Any, str], float]:
    """Sends ``seconds`` of speech as fast as gRPC takes it."""
    async with GrpcCaller(address) as call:
        started = time.monotonic()
        for chunk in frames(tone(RATE, seconds), RATE):
            call.send_audio(chunk)
        summary = await call.recorder.wait(lambda s: s.ended is not None, 60)
        await wait_until(lambda: call.status is not None, 10, "the stream's status")
        return call.session_id, summary, (call.status, call.details), time.monotonic() - started


async def test_audio_faster_than_real_time_and_endless_speech_stay_bounded(pod_factory):
    limits = {"maxUtteranceSeconds": 1, "audioBurstSeconds": 1}
    pod = await pod_factory(synthetic_config(session={"limits": limits}))
    address = pod.grpc_address
    floods_before = _counter(transport_metrics.SESSIONS_TOTAL, transport="grpc", reason="input_flood")
    refused_before = _counter(transport_metrics.BAD_INPUT_TOTAL, transport="grpc", reason="audio_rate")
    held = HeldAudio(pod)
    try:
        healthy, (speaker_id, speech), (flood_id, flood, status, flood_took) = await asyncio.gather(
            prebuffering_caller(address), endless_speaker(address, 4.0), flooder(address, 40.0)
        )
    finally:
        await held.stop()

    # the healthy caller, buffering a little, is served as if nothing happened
    assert healthy.errors == [] and len(healthy.agent_texts) == 2
    # 4 s of speech without a pause: heard as turns of at most 1 s, never held whole
    assert len(speech.transcripts) >= 3 and speech.errors == []
    bound = int(1.5 * BYTES_PER_SECOND)  # maxUtteranceSeconds plus windows on their way to the STT
    assert 0 < held.most[speaker_id] <= bound, held.most
    # the flood: its burst taken, the rest refused (reported once), then the call cut off
    assert flood.ended == "input_flood"
    # The pod ends the stream with RESOURCE_EXHAUSTED; grpcio's asyncio client, still writing the flood,
    # may report its own failed write as INTERNAL instead (grpc/grpc#36066).
    code, details = status
    if code is grpc.StatusCode.INTERNAL:
        assert details == "Internal error from Core"
    else:
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("audio flood: ")
    (rate_error,) = flood.errors
    assert rate_error.startswith("RESOURCE_EXHAUSTED") and "faster than real time" in rate_error
    assert flood_took < 10, "a flood of 40 s of audio is cut off at once, not heard for 40 s"
    assert held.most.get(flood_id, 0) <= bound, held.most
    assert _counter(transport_metrics.SESSIONS_TOTAL, transport="grpc", reason="input_flood") == (
        floods_before + 1
    )
    refused_frames = FLOOD_SECONDS / 0.02
    assert (
        _counter(transport_metrics.BAD_INPUT_TOTAL, transport="grpc", reason="audio_rate")
        >= refused_before + refused_frames - 2
    )
    await wait_until(lambda: pod.hub.live_sessions == 0, 30, "every session to end")


async def text_caller(address: str, turns: int) -> CallSummary:
    async with GrpcCaller(address) as call:
        for n in range(1, turns + 1):
            call.send_text(f"turn number {n}")
            await call.recorder.wait(functools.partial(answered, turns=n), 30)
        await call.end()
        return await call.recorder.wait(lambda s: s.ended is not None, 30)


async def huge_text(address: str) -> tuple[grpc.StatusCode | None, float]:
    async with GrpcCaller(address) as call:
        started = time.monotonic()
        call.send_text("word " * 40_000)  # 200 KB
        await call.recorder.wait(lambda s: s.ended is not None, 30)
        return call.status, time.monotonic() - started


SENT = MAX_QUEUED_TURNS + 6


async def long_and_piled_up_text(address: str) -> CallSummary:
    async with GrpcCaller(address) as call:
        call.send_text("x" * 10_000)
        await call.recorder.wait(lambda s: len(s.errors) >= 1, 10)
        for n in range(SENT):
            call.send_text(f"note number {n}")
        await call.recorder.wait(lambda s: len(s.errors) >= 2 and bool(s.agent_texts), 30)
        await call.end()
        return await call.recorder.wait(lambda s: s.ended is not None, 30)


async def test_huge_and_piled_up_text_is_refused_and_other_calls_keep_their_latency(pod_factory):
    # Without barge-in a typed turn waits for the answer playing (its 0.5 s of audio) instead of cutting
    # it short: the piled-up notes wait for certain, not only when they outrun the turn loop.
    pod = await pod_factory(synthetic_config(pipeline={"bargeIn": {"enabled": False}}))
    address = pod.grpc_address
    lag = LoopLag()
    try:
        healthy, (huge_status, huge_took), piled = await asyncio.gather(
            text_caller(address, 6), huge_text(address), long_and_piled_up_text(address)
        )
    finally:
        await lag.stop()
    # 200 KB in one message: refused by gRPC before it is read, at once
    assert huge_status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert huge_took < 5
    # 10,000 characters: refused with an error, the call goes on; typing faster than the agent answers
    # queues a few turns, not all of them
    too_long, *queued = piled.errors
    assert too_long.startswith("INVALID_ARGUMENT") and "at most 4000" in too_long
    assert queued and all(e.startswith("RESOURCE_EXHAUSTED") and "waiting" in e for e in queued)
    assert piled.agent_texts and len(piled.transcripts) + len(queued) == SENT
    # the other call on the pod answers every turn, promptly
    assert healthy.errors == [] and len(healthy.agent_texts) == 6
    latencies = [m["response_latency_ms"] for m in healthy.turn_metrics]
    assert len(latencies) == 6 and max(latencies) < 300, latencies
    assert lag.worst < 0.3, f"the pod's loop stalled for {lag.worst:.3f} s"
    await wait_until(lambda: pod.hub.live_sessions == 0, 30, "every session to end")


async def test_a_long_conversation_keeps_its_newest_turns_and_resumes_with_them(pod_factory):
    # Summaries off: the storage cap alone (with summaries on, old turns are summarised before it bites;
    # tests/context covers that).
    config = synthetic_config(session={"limits": {"maxHistoryTurns": 3}}, context={"summarize": False})
    pod = await pod_factory(config)
    first = GrpcCaller(pod.grpc_address)
    await first.open()
    for n in range(1, 6):
        first.send_text(f"turn number {n}")
        await first.recorder.wait(functools.partial(answered, turns=n), 10)
    (live,) = pod.hub.live()
    messages = live.session.conversation.messages
    assert messages[0].content == HISTORY_TRIMMED
    assert [m.content for m in messages if m.role == "user"] == [f"turn number {n}" for n in (3, 4, 5)]
    session_id, token = first.session_id, first.recorder.summary.resume_token
    first.drop()
    await first.close()
    # The pod frees the session once it sees the stream gone; a resume before that is refused (retry later)
    await wait_until(lambda: pod.hub.live_sessions == 0, 10, "the dropped stream released")

    async with GrpcCaller(pod.grpc_address, session_id=session_id, resume_token=token or "") as again:
        started = again.recorder.events[0][2]
        assert started["resumed"] is True and started["restored_turns"] == 5
        again.send_text("turn number 6")
        await again.recorder.wait(functools.partial(answered, turns=1), 10)
        events = again.recorder.events
        (transcript,) = [f for _, kind, f in events if kind == "user_transcript" and f["final"]]
        assert transcript["turn_id"] == "turn-6"  # turn ids go on after the dropped ones
        (live,) = pod.hub.live()
        users = [m.content for m in live.session.conversation.messages if m.role == "user"]
        assert users == [f"turn number {n}" for n in (4, 5, 6)]
        await again.end()
        await again.recorder.wait(lambda s: s.ended is not None, 10)


async def test_a_webrtc_caller_flooding_audio_or_sending_long_text_is_refused_then_cut_off(pod_factory):
    pod = await pod_factory(synthetic_config(session={"limits": {"audioBurstSeconds": 1}}))
    floods_before = _counter(transport_metrics.SESSIONS_TOTAL, transport="webrtc", reason="input_flood")
    async with aiohttp.ClientSession() as http, WebRTCCaller(pod.http_url + "/v1/webrtc", http=http) as call:
        call.send_text("x" * 5000)
        summary = await call.recorder.wait(lambda s: bool(s.errors), 20)
        assert summary.errors[0].startswith("INVALID_ARGUMENT") and "at most 4000" in summary.errors[0]
        call.send_text("hello")
        await call.recorder.wait(lambda s: bool(s.agent_texts), 20)  # the call went on
        # 2 s of audio every 50 ms: 40x real time, in bursts the pod's UDP socket can hold
        burst = tone(48000, 2.0)
        for _ in range(20):
            call.send_audio(burst)
            await asyncio.sleep(0.05)  # the flooder's pace, not synchronisation
        summary = await call.recorder.wait(lambda s: s.ended is not None, 60)
    assert summary.ended == "input_flood"
    refused = [e for e in summary.errors if "faster than real time" in e]
    assert len(refused) == 1 and refused[0].startswith("RESOURCE_EXHAUSTED")
    assert _counter(transport_metrics.SESSIONS_TOTAL, transport="webrtc", reason="input_flood") == (
        floods_before + 1
    )
