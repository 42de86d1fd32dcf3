"""Platform-added latency of the pipeline, in process, with zero-latency providers.

Sessions (energy VAD, synthetic STT and TTS, scripted LLM) are driven by one
PlayoutClock the way a transport drives them: on every 20 ms tick each caller
pushes one 20 ms frame of its microphone and pulls one frame of agent audio.

* response latency: the session's end-of-turn decision (the VAD heard the end
  of speech and the final transcript is in) -> the first agent frame pulled
  (TurnMetrics), p50/p99 at 1, 10 and 50 concurrent sessions. As the pod's
  transport hub does, a turn's first frame is pulled the moment it is queued;
  every later frame waits for its tick.
* barge-in: the first caller frame that holds speech -> the first tick whose
  pull returns no agent audio, in audio time (frames x 20 ms) and wall time.

The caller's speech is espeak-ng ("hello there" for turns, "wait a moment
please" to interrupt a story).

    python -m bench.pipeline_latency [--sessions 1 10 50] [--turns 8] [--barge-ins 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent_pod.audio.resample import StreamResampler
from agent_pod.audio.wav import WavStream
from agent_pod.config import AgentConfig
from agent_pod.pipeline.events import Interruption, TurnMetrics
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from agent_pod.transports.playout_clock import PlayoutClock
from bench.report import write_json

RATE = 16000
FRAME = RATE // 50 * 2
MIN_SPEECH_MS = 200
MIN_SILENCE_MS = 400
BARGE_IN_MS = 300


def speech(text: str) -> list[bytes]:
    """espeak-ng speech at 16 kHz, trimmed to its audible part, in 20 ms frames."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", text], capture_output=True, check=True
    ).stdout
    stream = WavStream()
    pcm = stream.feed(wav)
    assert stream.sample_rate is not None
    resampler = StreamResampler(stream.sample_rate, RATE)
    x = np.frombuffer(resampler.process(pcm) + resampler.flush(), dtype="<i2")
    loud = np.flatnonzero(np.abs(x) > 300)
    x = x[loud[0] : loud[-1] + 1]
    x = np.concatenate([x, np.zeros((-len(x)) % (FRAME // 2), dtype="<i2")])
    data = x.tobytes()
    return [data[i : i + FRAME] for i in range(0, len(data), FRAME)]


def config() -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "pipeline": {
                "vad": {"provider": "energy", "minSpeechMs": MIN_SPEECH_MS, "minSilenceMs": MIN_SILENCE_MS},
                "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
                "llm": {"provider": "scripted"},
                "tts": {"provider": "synthetic", "options": {"ms_per_char": "25"}},
                "bargeIn": {"minSpeechMs": BARGE_IN_MS},
            }
        }
    )


@dataclass
class CallerResult:
    latencies_ms: list[float] = field(default_factory=list)
    barge_in_audio_ms: list[float] = field(default_factory=list)
    barge_in_wall_ms: list[float] = field(default_factory=list)
    missed: int = 0


SILENCE = b"\x00" * FRAME


async def caller(
    clock: PlayoutClock,
    session: AgentSession,
    turn_frames: list[bytes],
    stop_frames: list[bytes],
    turns: int,
    barge_ins: int,
    seed: int,
) -> CallerResult:
    rng = random.Random(seed)
    result = CallerResult()
    events: list[Any] = []

    async def read() -> None:
        async for event in session.events():
            events.append(event)

    reader = asyncio.create_task(read())

    ahead: list[bytes] = []

    def first_frame_ready() -> None:  # what SessionHub does: the first frame goes out at once
        frame = session.pull_audio()
        if frame is not None:
            ahead.append(frame)

    session.first_frame_ready = first_frame_ready

    async def tick(frame: bytes) -> bytes | None:
        await clock.tick()
        session.push_audio(frame, RATE)
        if ahead:  # this tick's frame already went out
            return ahead.pop()
        return session.pull_audio()

    async def quiet(n: int) -> None:
        for _ in range(n):
            await tick(SILENCE)

    await quiet(rng.randrange(50))  # spread the callers' turns over time
    for _ in range(turns):
        for frame in turn_frames:
            await tick(frame)
        heard = False
        for _ in range(500):  # up to 10 s for the answer to start and finish
            got = await tick(SILENCE) is not None
            heard |= got
            if heard and not got and not session.busy:
                break
        await quiet(rng.randrange(5, 25))
    for _ in range(barge_ins):
        session.push_text("tell me a story")
        for _ in range(500):  # wait for the story, then let it play a moment
            if await tick(SILENCE) is not None:
                break
        for _ in range(rng.randrange(20, 40)):
            await tick(SILENCE)
        onset = time.monotonic()
        stopped = None
        for i, frame in enumerate(stop_frames):  # the caller says the whole sentence
            if await tick(frame) is None and stopped is None:
                stopped = i
                result.barge_in_wall_ms.append((time.monotonic() - onset) * 1000)
        if stopped is None:
            result.missed += 1
        else:
            result.barge_in_audio_ms.append(stopped * 20.0)
        heard = False
        for _ in range(500):  # its answer plays out
            got = await tick(SILENCE) is not None
            heard |= got
            if heard and not got and not session.busy:
                break
    await session.close("client_ended")
    await reader
    result.latencies_ms = [e.response_latency_ms for e in events if isinstance(e, TurnMetrics)]
    interruptions = [e for e in events if isinstance(e, Interruption)]
    if len(interruptions) != barge_ins - result.missed:
        raise RuntimeError(f"expected {barge_ins - result.missed} interruptions, saw {len(interruptions)}")
    return result


async def watch_ticks(clock: PlayoutClock, out: list[float]) -> None:
    """How late each tick reaches a waiter: the scheduling noise every latency above includes."""
    loop = asyncio.get_running_loop()
    first = await clock.tick()
    start = loop.time() - first * clock.period
    while True:
        index = await clock.tick()
        out.append(max(0.0, (loop.time() - (start + index * clock.period)) * 1000))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run(sessions: int, turns: int, barge_ins: int) -> dict[str, Any]:
    turn_frames = speech("hello there") + [SILENCE] * (MIN_SILENCE_MS // 20 + 2)
    stop_frames = speech("wait a moment please") + [SILENCE] * 30
    cfg = config()
    providers = build_providers(cfg.pipeline)
    clock = PlayoutClock()
    await clock.start()
    try:
        live = [
            AgentSession(session_id=f"bench-{i}", config=cfg, providers=providers, output_sample_rate=RATE)
            for i in range(sessions)
        ]
        for s in live:
            await s.start()
        lateness: list[float] = []
        watcher = asyncio.create_task(watch_ticks(clock, lateness))
        cpu0, wall0 = time.process_time(), time.monotonic()
        results = await asyncio.gather(
            *(
                caller(clock, s, turn_frames, stop_frames, turns, barge_ins, seed=i)
                for i, s in enumerate(live)
            )
        )
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        watcher.cancel()
    finally:
        await clock.stop()
    lat = [x for r in results for x in r.latencies_ms]
    audio = [x for r in results for x in r.barge_in_audio_ms]
    wall_b = [x for r in results for x in r.barge_in_wall_ms]
    return {
        "sessions": sessions,
        "turns": len(lat),
        "latency_p50_ms": pct(lat, 50),
        "latency_p99_ms": pct(lat, 99),
        "latency_max_ms": max(lat) if lat else float("nan"),
        "barge_ins": len(audio),
        "barge_ins_missed": sum(r.missed for r in results),
        "barge_in_audio_p50_ms": pct(audio, 50),
        "barge_in_audio_p99_ms": pct(audio, 99),
        "barge_in_wall_p50_ms": pct(wall_b, 50),
        "barge_in_wall_p99_ms": pct(wall_b, 99),
        "tick_lateness_p50_ms": pct(lateness, 50),
        "tick_lateness_p99_ms": pct(lateness, 99),
        "cpu_ms_per_session_second": cpu * 1000 / (wall * sessions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--turns", type=int, default=8, help="spoken turns per session")
    parser.add_argument("--barge-ins", type=int, default=4, help="interruptions per session")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    rows = [asyncio.run(run(n, args.turns, args.barge_ins)) for n in args.sessions]
    print(
        "response latency: end-of-turn decision -> first agent frame pulled "
        "(targets p50 <= 30 ms, p99 <= 60 ms)\n"
        f"barge-in: caller speech onset -> agent audio stopped (target <= {BARGE_IN_MS} + 20 ms; "
        f"min speech {BARGE_IN_MS} ms)\n"
    )
    header = (
        f"{'sessions':>8} {'turns':>6} {'lat p50':>8} {'lat p99':>8} {'lat max':>8} {'barge-ins':>9} "
        f"{'audio p50':>9} {'audio p99':>9} {'wall p50':>8} {'wall p99':>8} {'tick p99':>8} {'CPU ms/s':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['sessions']:>8} {r['turns']:>6} {r['latency_p50_ms']:>8.1f} {r['latency_p99_ms']:>8.1f} "
            f"{r['latency_max_ms']:>8.1f} {r['barge_ins']:>6}/{r['barge_ins'] + r['barge_ins_missed']:<2} "
            f"{r['barge_in_audio_p50_ms']:>9.0f} {r['barge_in_audio_p99_ms']:>9.0f} "
            f"{r['barge_in_wall_p50_ms']:>8.0f} {r['barge_in_wall_p99_ms']:>8.0f} "
            f"{r['tick_lateness_p99_ms']:>8.1f} {r['cpu_ms_per_session_second']:>8.1f}"
        )
    print(
        "\nlatencies in ms; tick p99 = how late playout ticks reached the callers (machine scheduling noise, "
        "included in every latency); CPU ms/s = process CPU per session per wall second"
    )
    write_json(args.json, {"benchmark": "pipeline_latency", "results": rows})


if __name__ == "__main__":
    main()
