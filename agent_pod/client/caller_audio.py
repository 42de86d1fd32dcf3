"""Caller-side audio: WAV files as PCM16 mono, pacing, and where speech ends."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

FRAME_MS = 20


def read_wav(path: str | Path, sample_rate: int) -> bytes:
    """A PCM16 WAV as mono PCM16 at ``sample_rate`` (channels averaged, resampled when needed)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype("<i2")
    if rate != sample_rate:
        data = soxr.resample(data, rate, sample_rate).astype("<i2")
    return data.tobytes()


def frames(pcm: bytes, sample_rate: int, frame_ms: int = FRAME_MS) -> list[bytes]:
    """``pcm`` cut into frames, the last one padded with silence."""
    size = sample_rate * frame_ms // 1000 * 2
    if len(pcm) % size:
        pcm += bytes(size - len(pcm) % size)
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def frame_level(frame: bytes) -> int:
    """Peak absolute sample of a PCM16 frame."""
    if not frame:
        return 0
    return int(np.abs(np.frombuffer(frame, dtype="<i2").astype(np.int32)).max())


def speech_ends(
    pcm: bytes, sample_rate: int, threshold: int = 500, min_silence_ms: int = 300, frame_ms: int = FRAME_MS
) -> list[int]:
    """Indices of the frames right after each stretch of sound followed by ``min_silence_ms`` of quiet.

    The caller marks these moments to measure the agent's answer latency."""
    levels = [frame_level(f) for f in frames(pcm, sample_rate, frame_ms)]
    quiet_needed = max(1, min_silence_ms // frame_ms)
    ends, loud_seen, quiet = [], False, 0
    for i, level in enumerate(levels):
        if level >= threshold:
            loud_seen, quiet = True, 0
        elif loud_seen:
            quiet += 1
            if quiet == quiet_needed:
                ends.append(i - quiet_needed + 1)
                loud_seen = False
    if loud_seen:
        ends.append(len(levels))
    return ends
