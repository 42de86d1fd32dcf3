"""Real test audio: espeak-ng utterances, silence, noise and clicks as PCM16 mono bytes."""

from __future__ import annotations

import functools
import io
import subprocess
import wave

import numpy as np
import soxr


@functools.lru_cache(maxsize=64)
def espeak_utterance(text: str, rate: int = 16000, voice: str = "en-us", speed_wpm: int = 160) -> bytes:
    """``text`` spoken by espeak-ng, resampled to ``rate`` (cached per process)."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed_wpm), text],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        source_rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if source_rate == rate:
        return pcm.tobytes()
    return np.asarray(soxr.resample(pcm, source_rate, rate), dtype="<i2").tobytes()


def trim_silence(pcm: bytes, threshold: int = 300) -> bytes:
    """Drop the leading and trailing near-silence espeak-ng pads its output with."""
    x = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(x) > threshold)
    if not len(loud):
        return b""
    return x[loud[0] : loud[-1] + 1].tobytes()


def silence(ms: int, rate: int = 16000) -> bytes:
    return b"\x00\x00" * (rate * ms // 1000)


def white_noise(ms: int, rate: int = 16000, level: float = 0.3, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-level, level, rate * ms // 1000) * 32767
    return x.astype("<i2").tobytes()


def clicks(ms: int, rate: int = 16000, every_ms: int = 100, click_ms: int = 2, level: float = 0.9) -> bytes:
    """Loud short impulses every ``every_ms`` (keyboard, mouse, connector noise)."""
    x = np.zeros(rate * ms // 1000)
    width = max(1, rate * click_ms // 1000)
    for start in range(0, len(x), rate * every_ms // 1000):
        x[start : start + width] = level * np.where(np.arange(len(x[start : start + width])) % 2, -1, 1)
    return (x * 32767).astype("<i2").tobytes()


def frames(pcm: bytes, rate: int = 16000, frame_ms: int = 20) -> list[bytes]:
    """``pcm`` cut into frames (the last one padded with silence)."""
    size = rate * frame_ms // 1000 * 2
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + b"\x00" * (size - len(out[-1]))
    return out
