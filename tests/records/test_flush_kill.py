"""A recording survives SIGKILL: a valid WAV up to its last flush."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_sigkilled_recording_is_valid_up_to_its_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.records.recorder_process", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    flushes: list[float] = []

    def five_flushes() -> bool:
        flushes.append(float(stdout.readline()))
        return len(flushes) >= 5

    try:
        wait_for(five_flushes, timeout=20)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    elapsed = flushes[-1]  # the call's time at the last flush it reported
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        duration = w.getnframes() / w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(audio) == w.getnframes()  # the header does not promise more than the file holds
    assert elapsed - 1.0 <= duration <= elapsed + 1.0, (duration, elapsed)
    # Both channels carry the tone through the second half (the first ms are the resampler's ramp).
    half = audio[len(audio) // 2 :]
    assert np.abs(half[:, 0]).max() > 4000 and np.abs(half[:, 1]).max() > 4000
