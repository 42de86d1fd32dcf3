"""Sessions per core: gRPC sessions that talk continuously while output frames stay on time, and the
pod CPU each WebRTC session costs.

The pod runs in a subprocess with zero-latency providers; its CPU (all threads)
is read from /proc. gRPC callers (a lean raw client here, one sender tick for
all) stream 20 ms of quiet audio every 20 ms and keep the agent talking (a long
story, asked again whenever one ends). Output-frame lateness is measured per
talk spurt on the caller side: how much later than the spurt's best-placed frame
each frame arrives against its 20 ms schedule. The ramp stops at the first step
whose p99 lateness passes the bound. Sessions per core = sessions / pod CPU
cores used. WebRTC: pod CPU seconds per second of two-way audio.

    python -m bench.transport_capacity [--grpc 25 50 100 150 200] [--webrtc 5 10] [--seconds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import grpc

from agent_pod.client.webrtc_client import WebRTCCaller
from bench.transport_common import (
    bucket_quantile,
    percentile,
    pod_process,
    print_table,
    write_json,
    zero_latency_config,
)
from voicefleet.v1 import agent_pb2, agent_pb2_grpc

FRAME = 0.020
RATE = 16000
LATENESS_BOUND_MS = 20.0
QUIET = (b"\x03\x00\xfd\xff" * (RATE // 50 // 2))[: RATE // 50 * 2]  # -80 dBFS: the VAD hears silence
TICK_LATENESS = "voicefleet_output_frame_lateness_seconds"
STORY = agent_pb2.ClientEvent(text=agent_pb2.TextInput(text="tell me a story"))


class LeanCaller:
    """One gRPC stream: quiet input every tick, agent audio arrival times recorded."""

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
        start = agent_pb2.StartSession(input_format=agent_pb2.AudioFormat(sample_rate_hz=RATE, channels=1))
        self.outgoing.put_nowait(agent_pb2.ClientEvent(start=start))
        self.outgoing.put_nowait(STORY)
        call = self.stub.Converse(self.requests())
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "audio":
                    if self.recording:
                        self.arrivals.append(time.monotonic())
                elif kind == "agent_text" and event.agent_text.final:
                    self.outgoing.put_nowait(STORY)  # keep the agent talking
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


async def grpc_step(pod: Any, sessions: int, seconds: float, warmup: float) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
        stub = agent_pb2_grpc.VoiceAgentStub(channel)
        callers = [LeanCaller(stub) for _ in range(sessions)]
        for caller in callers:
            caller.task = asyncio.get_running_loop().create_task(caller.run())
            await asyncio.sleep(random.uniform(0, 0.002))
        quiet = agent_pb2.ClientEvent(audio=agent_pb2.AudioChunk(pcm=QUIET))

        async def ticker(stop_at: float) -> None:
            next_tick = time.monotonic()
            while next_tick < stop_at:
                next_tick += FRAME
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
                for caller in callers:
                    caller.outgoing.put_nowait(quiet)

        begin = time.monotonic()
        sender = asyncio.get_running_loop().create_task(ticker(begin + warmup + seconds))
        await asyncio.sleep(warmup)
        for caller in callers:
            caller.recording = True
        ticks0 = await pod.histogram(TICK_LATENESS)
        cpu0, t0 = pod.cpu_seconds(), time.monotonic()
        await sender
        cpu1, t1 = pod.cpu_seconds(), time.monotonic()
        ticks1 = await pod.histogram(TICK_LATENESS)
        for caller in callers:
            caller.recording = False
            caller.outgoing.put_nowait(None)
            assert caller.task is not None
            caller.task.cancel()
        await asyncio.gather(*(c.task for c in callers if c.task), return_exceptions=True)
    late = [v for c in callers for v in spurt_lateness_ms(c.arrivals)]
    frames = sum(len(c.arrivals) for c in callers)
    cores = (cpu1 - cpu0) / (t1 - t0)
    return {
        "sessions": sessions,
        "pod_cores": cores,
        "sessions_per_core": sessions / cores if cores else float("inf"),
        "frames_per_session_per_s": frames / sessions / (t1 - t0),
        "lateness_p50_ms": percentile(late, 0.5),
        "lateness_p99_ms": percentile(late, 0.99),
        "failed": sum(1 for c in callers if c.failed),
        "pod_tick_lateness_p99_ms_at_most": bucket_quantile(ticks0, ticks1, 0.99) * 1000,
    }


async def webrtc_step(pod: Any, sessions: int, seconds: float, warmup: float) -> dict[str, Any]:
    callers = [WebRTCCaller(pod.http_url + "/v1/webrtc") for _ in range(sessions)]
    for caller in callers:
        await caller.open()
        caller.send_text("tell me a story")
    await asyncio.sleep(warmup)
    cpu0, t0 = pod.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = pod.cpu_seconds(), time.monotonic()
    audible = [c.recorder.summary.audible_frames for c in callers]
    for caller in callers:
        await caller.close()
    cpu_per_audio_second = (cpu1 - cpu0) / (sessions * (t1 - t0))
    return {
        "sessions": sessions,
        "pod_cores": (cpu1 - cpu0) / (t1 - t0),
        "cpu_ms_per_audio_s": cpu_per_audio_second * 1000,
        "sessions_per_core": 1 / cpu_per_audio_second,
        "agent_audible_frames": min(audible),
        # The callers (one process here) must keep up, or the pod is idle for want of audio.
        "valid": min(audible) >= 0.5 * (warmup + seconds) / FRAME,
    }


async def run(grpc_steps: list[int], webrtc_steps: list[int], seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {"grpc": [], "webrtc": []}
    config = zero_latency_config(idleTimeoutSeconds=3600)
    if grpc_steps:
        async with pod_process(config) as pod:
            for n in grpc_steps:
                step = await grpc_step(pod, n, seconds, warmup=3.0)
                results["grpc"].append(step)
                print(f"grpc {n}: {step}", flush=True)
                if step["lateness_p99_ms"] > LATENESS_BOUND_MS:
                    break
    if webrtc_steps:
        async with pod_process(config) as pod:
            for n in webrtc_steps:
                step = await webrtc_step(pod, n, seconds, warmup=3.0)
                results["webrtc"].append(step)
                print(f"webrtc {n}: {step}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grpc", type=int, nargs="*", default=[25, 50, 100, 150, 200])
    parser.add_argument("--webrtc", type=int, nargs="*", default=[5, 10])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.grpc, args.webrtc, args.seconds))
    if results["grpc"]:
        print_table(
            ["gRPC sessions", "pod cores", "sessions/core", "frames/s/session",
             "late p50 ms", "late p99 ms", "pod tick p99 <= ms", "failed"],
            [
                [r["sessions"], r["pod_cores"], r["sessions_per_core"], r["frames_per_session_per_s"],
                 r["lateness_p50_ms"], r["lateness_p99_ms"], r["pod_tick_lateness_p99_ms_at_most"],
                 r["failed"]]
                for r in results["grpc"]
            ],
        )  # fmt: skip
        ok = [r for r in results["grpc"] if r["lateness_p99_ms"] <= LATENESS_BOUND_MS]
        if ok:
            best = max(ok, key=lambda r: r["sessions"])
            print(f"max gRPC sessions with p99 lateness <= {LATENESS_BOUND_MS:g} ms: {best['sessions']} "
                  f"({best['sessions_per_core']:.0f} per pod core)")  # fmt: skip
    if results["webrtc"]:
        print_table(
            ["WebRTC sessions", "pod cores", "CPU ms per audio s", "sessions/core",
             "min audible frames", "valid"],
            [
                [r["sessions"], r["pod_cores"], r["cpu_ms_per_audio_s"], r["sessions_per_core"],
                 r["agent_audible_frames"], r["valid"]]
                for r in results["webrtc"]
            ],
        )  # fmt: skip
    write_json(args.json, results)


if __name__ == "__main__":
    main()
