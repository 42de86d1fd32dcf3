"""A caller worker process for the transport benchmarks (started by ``bench.transport_common.Workers``).

Reads a ``CallerJob`` (one JSON line) on stdin, connects its callers, prints
``ready``, reads the start time (a ``time.monotonic()`` value, shared by all
processes of the machine) on stdin, runs, and prints a ``WorkerResult`` (one
JSON line). Besides what its callers measured, it reports its own CPU and the
lag of its event loop, the client's share of what the callers measured.

    python -m bench.transport_callers < job.json
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from functools import partial
from typing import Any, Protocol, TypeVar

import grpc

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallRecorder, CallSummary
from agent_pod.client.webrtc_client import WebRTCCaller, encode_frames
from bench.transport_common import MIN_SILENCE_MS, CallerJob, TurnResult, WorkerResult
from tests.support.pod import tone
from voicefleet.v1 import agent_pb2, agent_pb2_grpc

SPEECH_SECONDS = 0.4
FRAME = 0.020
GRPC_RATE = 16000
# -80 dBFS: the VAD hears silence, but it is not digital zero.
QUIET = (b"\x03\x00\xfd\xff" * (GRPC_RATE // 50 // 2))[: GRPC_RATE // 50 * 2]
STORY = "tell me a story"


class Opens(Protocol):
    async def open(self, within: float = ...) -> None: ...


C = TypeVar("C", bound=Opens)


class Runner(Protocol):
    async def connect(self) -> None: ...
    async def run(self, start_at: float) -> WorkerResult: ...


class Meter:
    """This process's CPU time and event-loop lag over a window."""

    def __init__(self) -> None:
        self.lag_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = self._t0 = 0.0
        self.cpu_seconds = self.wall_seconds = 0.0

    def start(self) -> None:
        self._cpu0, self._t0 = time.process_time(), time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self.lag_ms.append((time.monotonic() - before - 0.01) * 1000)

    def stop(self) -> None:
        self.cpu_seconds = time.process_time() - self._cpu0
        self.wall_seconds = time.monotonic() - self._t0
        if self._task is not None:
            self._task.cancel()

    def fill(self, result: WorkerResult) -> WorkerResult:
        result.cpu_seconds, result.wall_seconds = self.cpu_seconds, self.wall_seconds
        result.loop_lag_ms = [round(v, 2) for v in self.lag_ms]
        return result


async def sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))


async def open_all(callers: list[C], failed: list[str]) -> list[C]:
    """Open every caller at once; the ones that could not connect are recorded in ``failed`` and left out."""
    opened = await asyncio.gather(*(c.open() for c in callers), return_exceptions=True)
    kept = []
    for caller, outcome in zip(callers, opened, strict=True):
        if isinstance(outcome, BaseException):
            failed.append(f"connect: {outcome!r}")
        else:
            kept.append(caller)
    return kept


class LatencyCallers:
    """Callers that each say a short tone, go quiet and wait for the answer, ``turns`` times."""

    def __init__(self, job: CallerJob) -> None:
        self.job = job
        self.callers: list[GrpcCaller | WebRTCCaller] = []
        self.failed: list[str] = []
        speech_end = int(SPEECH_SECONDS / FRAME)
        self.speech_ends = [speech_end]
        silence = MIN_SILENCE_MS / 1000 + 0.2
        self.pcm = tone(GRPC_RATE, SPEECH_SECONDS, silence_after=silence)
        # Every caller says the same thing: encode it once (a browser encodes in its own process).
        self.packets = encode_frames(tone(48000, SPEECH_SECONDS, silence_after=silence))

    async def connect(self) -> None:
        for _ in range(self.job.sessions):
            caller: GrpcCaller | WebRTCCaller
            if self.job.transport == "grpc":
                caller = GrpcCaller(self.job.grpc_address, sample_rate=GRPC_RATE)
            else:
                caller = WebRTCCaller(self.job.webrtc_url)
            self.callers.append(caller)
        self.callers = await open_all(self.callers, self.failed)

    async def run(self, start_at: float) -> WorkerResult:
        meter = Meter()
        await sleep_until(start_at)
        meter.start()
        spread = self.job.spread_seconds
        outcomes = await asyncio.gather(
            *(self._talk(c, start_at + random.uniform(0, spread)) for c in self.callers),
            return_exceptions=True,
        )
        meter.stop()
        result = WorkerResult(sessions=self.job.sessions, failed=list(self.failed))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                result.failed.append(repr(outcome))
            else:
                result.turns.extend(outcome)
        return meter.fill(result)

    async def _talk(self, caller: GrpcCaller | WebRTCCaller, at: float) -> list[TurnResult]:
        await sleep_until(at)
        recorder = caller.recorder
        try:
            for turn in range(1, self.job.turns + 1):
                if isinstance(caller, WebRTCCaller):
                    await caller.play_packets(self.packets, self.speech_ends)
                else:
                    await caller.play(self.pcm, self.speech_ends)
                await recorder.wait(partial(answered, turns=turn), 60)
            await caller.end()
        finally:
            await caller.close()
        summary = recorder.summary
        metrics: list[dict[str, Any]] = summary.turn_metrics
        return [
            TurnResult(
                added_ms=t.latency_ms - MIN_SILENCE_MS,
                pod_ms=float(metrics[i]["response_latency_ms"]) if i < len(metrics) else None,
                stt_final_ms=float(metrics[i].get("stt_final_ms", 0.0)) if i < len(metrics) else None,
            )
            for i, t in enumerate(summary.latencies)
        ]


def answered(summary: CallSummary, turns: int) -> bool:
    return len(summary.agent_texts) >= turns and len(summary.latencies) >= turns


class LeanGrpcCaller:
    """One gRPC stream that keeps the agent talking; agent audio arrival times are recorded."""

    def __init__(self, stub: agent_pb2_grpc.VoiceAgentStub) -> None:
        self.stub = stub
        self.outgoing: asyncio.Queue[agent_pb2.ClientEvent | None] = asyncio.Queue()
        self.arrivals: list[float] = []
        self.recording = False
        self.task: asyncio.Task[None] | None = None
        self.failed: str | None = None

    async def requests(self) -> Any:
        while (item := await self.outgoing.get()) is not None:
            yield item

    async def run(self) -> None:
        story = agent_pb2.ClientEvent(text=agent_pb2.TextInput(text=STORY))
        start = agent_pb2.StartSession(
            input_format=agent_pb2.AudioFormat(sample_rate_hz=GRPC_RATE, channels=1)
        )
        self.outgoing.put_nowait(agent_pb2.ClientEvent(start=start))
        self.outgoing.put_nowait(story)
        call = self.stub.Converse(self.requests())
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "audio":
                    if self.recording:
                        self.arrivals.append(time.monotonic())
                elif kind == "agent_text" and event.agent_text.final:
                    self.outgoing.put_nowait(story)  # keep the agent talking
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.failed = f"{exc.code()}: {exc.details()}"


def spurt_lateness_ms(arrivals: list[float], gap: float = 0.1) -> list[float]:
    """Lateness of each frame against its spurt's 20 ms schedule, anchored on the best-placed frame."""
    late: list[float] = []
    spurt: list[float] = []
    for t in [*arrivals, float("inf")]:
        if spurt and t - spurt[-1] > gap:
            offsets = [a - i * FRAME for i, a in enumerate(spurt)]
            best = min(offsets)
            late.extend((o - best) * 1000 for o in offsets)
            spurt = []
        spurt.append(t)
    return late


class GrpcLoad:
    """gRPC sessions kept talking: quiet audio in every 20 ms (one sender tick for all), a story out."""

    def __init__(self, job: CallerJob) -> None:
        self.job = job
        self.channel: grpc.aio.Channel | None = None
        self.callers: list[LeanGrpcCaller] = []

    async def connect(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.job.grpc_address)
        await asyncio.wait_for(self.channel.channel_ready(), 30)
        stub = agent_pb2_grpc.VoiceAgentStub(self.channel)
        self.callers = [LeanGrpcCaller(stub) for _ in range(self.job.sessions)]

    async def run(self, start_at: float) -> WorkerResult:
        job, loop = self.job, asyncio.get_running_loop()
        await sleep_until(start_at)
        for caller in self.callers:
            caller.task = loop.create_task(caller.run())
        record_from = start_at + job.warmup_seconds
        record_until = record_from + job.seconds
        sender = loop.create_task(self._ticker(record_until))
        meter = Meter()
        await sleep_until(record_from)
        meter.start()
        for caller in self.callers:
            caller.recording = True
        await sender
        meter.stop()
        for caller in self.callers:
            caller.recording = False
            caller.outgoing.put_nowait(None)
            assert caller.task is not None
            caller.task.cancel()
        await asyncio.gather(*(c.task for c in self.callers if c.task), return_exceptions=True)
        assert self.channel is not None
        await self.channel.close()
        result = WorkerResult(
            sessions=job.sessions,
            failed=[c.failed for c in self.callers if c.failed],
            lateness_ms=[round(v, 2) for c in self.callers for v in spurt_lateness_ms(c.arrivals)],
            frames=sum(len(c.arrivals) for c in self.callers),
        )
        return meter.fill(result)

    async def _ticker(self, stop_at: float) -> None:
        quiet = agent_pb2.ClientEvent(audio=agent_pb2.AudioChunk(pcm=QUIET))
        next_tick = time.monotonic()
        while next_tick < stop_at:
            next_tick += FRAME
            await sleep_until(next_tick)
            for caller in self.callers:
                caller.outgoing.put_nowait(quiet)


class WebRTCLoad:
    """WebRTC sessions whose agent talks continuously (a story, asked again when it ends)."""

    def __init__(self, job: CallerJob) -> None:
        self.job = job
        self.callers: list[WebRTCCaller] = []
        self.failed: list[str] = []

    def _caller(self) -> WebRTCCaller:
        def on_event(kind: str, fields: dict[str, Any]) -> None:
            if kind == "agent_text" and fields.get("final"):
                caller.send_text(STORY)

        caller = WebRTCCaller(self.job.webrtc_url, recorder=CallRecorder(on_event=on_event))
        return caller

    async def connect(self) -> None:
        self.callers = [self._caller() for _ in range(self.job.sessions)]
        self.callers = await open_all(self.callers, self.failed)

    async def run(self, start_at: float) -> WorkerResult:
        job = self.job
        await sleep_until(start_at)
        for caller in self.callers:
            caller.send_text(STORY)
        meter = Meter()
        await sleep_until(start_at + job.warmup_seconds)
        meter.start()
        before = [c.recorder.summary.audible_frames for c in self.callers]
        frames0 = sum(c.recorder.summary.audio_frames for c in self.callers)
        await sleep_until(start_at + job.warmup_seconds + job.seconds)
        meter.stop()
        audible = [c.recorder.summary.audible_frames - b for c, b in zip(self.callers, before, strict=True)]
        frames = sum(c.recorder.summary.audio_frames for c in self.callers) - frames0
        await asyncio.gather(*(c.close() for c in self.callers), return_exceptions=True)
        result = WorkerResult(
            sessions=job.sessions,
            failed=self.failed,
            frames=frames,
            min_audible_frames=min(audible, default=0),
        )
        return meter.fill(result)


async def main() -> None:
    loop = asyncio.get_running_loop()
    job = CallerJob.model_validate_json(await loop.run_in_executor(None, sys.stdin.readline))
    runner: Runner
    if job.kind == "latency":
        runner = LatencyCallers(job)
    elif job.kind == "grpc_load":
        runner = GrpcLoad(job)
    else:
        runner = WebRTCLoad(job)
    await runner.connect()
    print("ready", flush=True)
    start_at = float(await loop.run_in_executor(None, sys.stdin.readline))
    result = await runner.run(start_at)
    print(result.model_dump_json(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
