"""Both channels on the call's clock: jittered, lossy caller packets and per-tick agent frames."""

from __future__ import annotations

import asyncio
import random
import wave
from pathlib import Path
from typing import Literal

import numpy as np

from agent_pod.config import RecordingSpec
from agent_pod.records.alignment import ArrivalPlacer
from agent_pod.records.recording import CallRecording

RATE: Literal[16000] = 16000


def test_placer_absorbs_jitter_and_follows_gaps() -> None:
    placer = ArrivalPlacer(window=3200, discontinuity=1280)  # 200 ms window, 80 ms gap at 16 kHz
    # A continuous stream of 320-sample packets, the second one 240 samples late: still back to back.
    assert placer.place(320, 320) == 0
    assert placer.place(640 + 240, 320) == 320
    assert placer.place(960, 320) == 640
    # Nothing for a second (a sender that is silent while the caller is): the stream restarts there.
    assert placer.place(960 + 16000, 320) == 16000 + 640
    # A packet early against the anchor can never overlap what is placed.
    assert placer.place(16000 + 640, 320) == 16000 + 960


def test_placer_catches_up_after_a_lost_packet() -> None:
    placer = ArrivalPlacer(window=3200, discontinuity=1280)
    end = 0
    for _ in range(10):
        end += 320
        placer.place(end, 320)
    end += 320  # one packet lost
    starts = []
    for _ in range(20):
        end += 320
        starts.append(placer.place(end, 320))
    # Within the window the anchor moves to the later offsets: packets land where they arrived.
    assert starts[-1] == end - 320


def _onset(channel: np.ndarray, rate: int) -> float:
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > 3000)
    assert loud.size, "no burst in the channel"
    return float(loud[0]) / rate


async def test_bursts_land_on_the_call_clock(tmp_path: Path) -> None:
    rng = random.Random(13)
    now = [0.0]
    spec = RecordingSpec(enabled=True, sample_rate=RATE, flush_seconds=1.0)
    path = tmp_path / "call.wav"
    rec = CallRecording("s1", spec, path, str(path), clock=lambda: now[0])
    await rec.start()
    caller_rate, agent_rate = 8000, 48000
    tone8 = (np.sin(np.arange(160) * 2 * np.pi * 440 / caller_rate) * 12000).astype("<i2").tobytes()
    tone48 = (np.sin(np.arange(960) * 2 * np.pi * 440 / agent_rate) * 12000).astype("<i2").tobytes()
    silence8 = bytes(320)
    # The caller's packets: 20 ms each, sent on time, arriving 0-25 ms late, 3% lost; a burst at 1.0 s.
    arrivals = []
    for k in range(125):
        if rng.random() < 0.03 and k != 50:
            continue
        sent_end = (k + 1) * 0.02
        arrivals.append((sent_end + rng.uniform(0, 0.025), tone8 if 50 <= k < 60 else silence8))
    arrivals.sort(key=lambda a: a[0])
    # The agent: a playout tick every 20 ms (a few ms of loop lag), a tone from the tick at 1.5 s.
    ticks = [(k * 0.02 + rng.uniform(0, 0.004), tone48 if 75 <= k < 85 else None) for k in range(125)]
    events = sorted([(t, "caller", pcm) for t, pcm in arrivals] + [(t, "agent", f) for t, f in ticks])
    next_flush = 1.0
    for t, who, pcm in events:
        if t >= next_flush:
            now[0] = next_flush
            await rec.flush()
            next_flush += 1.0
        now[0] = t
        if who == "caller":
            assert pcm is not None
            rec.caller(pcm, caller_rate)
        else:
            rec.agent(pcm, agent_rate)
    info = await rec.finish()
    assert info is not None
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(_onset(audio[:, 0], RATE) - 1.0) <= 0.02
    assert abs(_onset(audio[:, 1], RATE) - 1.5) <= 0.02
    assert abs(info.duration_ms - 2500) <= 60


async def test_finishing_during_a_flush_loses_nothing(tmp_path: Path) -> None:
    """finish() while the periodic flush is in the writer thread: the two never write at once."""
    spec = RecordingSpec(enabled=True, sample_rate=RATE, flush_seconds=0.2)
    for attempt in range(5):
        path = tmp_path / f"call-{attempt}.wav"
        rec = CallRecording("s", spec, path, str(path))
        await rec.start()
        ticks = 0
        while not rec._flushing.locked() or ticks < 10:  # until a flush is in flight
            rec.agent(bytes(640), RATE)
            rec.caller(bytes(640), RATE)
            ticks += 1
            await asyncio.sleep(0.001)
        info = await rec.finish()
        assert info is not None
        with wave.open(str(path)) as w:
            assert w.getnframes() >= ticks * 320
