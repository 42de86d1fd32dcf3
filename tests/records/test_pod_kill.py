"""A real `voicefleet pod` recording a gRPC call is SIGKILLed mid-call: the WAV on its volume is valid up
to its last flush."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np

from agent_pod.client.grpc_client import GrpcCaller
from tests.support.pod import PodProcess, synthetic_config, tone
from tests.support.wait import async_wait_for


def recordings(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


async def test_a_killed_pod_leaves_its_recording_up_to_the_last_flush(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    config = synthetic_config(recording={"enabled": True, "flushSeconds": 0.5, "sampleRate": 8000})
    pod = PodProcess(config, tmp_path, env={"VOICEFLEET_RECORDINGS_DIR": str(root)})
    await pod.start()
    try:
        async with GrpcCaller(pod.grpc_address) as call:
            opened = time.monotonic()
            call.send_text("hello")
            await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
            await call.play(tone(16000, 2.0))  # the caller speaks: the left channel
            (path,) = await async_wait_for(lambda: _async(recordings(root)), what="the recording file")
            await pod.kill()
            elapsed = time.monotonic() - opened
    finally:
        await pod.kill()
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    duration = len(audio) / 8000
    # Up to the last flush: at most flushSeconds + the flush's holdback (and the caller's start-up) short.
    assert elapsed - 1.0 <= duration <= elapsed, (duration, elapsed)
    assert np.abs(audio[:, 0]).max() > 3000, "the caller's tone is on the left"
    assert np.abs(audio[:, 1]).max() > 1000, "the agent's answer is on the right"


async def _async(value: list[Path]) -> list[Path]:
    await asyncio.sleep(0)
    return value
