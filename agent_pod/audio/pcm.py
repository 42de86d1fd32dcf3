"""PCM16LE mono: validation of caller audio and conversions."""

from __future__ import annotations

import numpy as np

SUPPORTED_INPUT_RATES = frozenset({8000, 16000, 24000, 48000})
MAX_CHUNK_SECONDS = 1.0
BYTES_PER_SAMPLE = 2


class InvalidAudio(ValueError):
    """Caller audio the pipeline cannot take; the session stays healthy."""


def validate_chunk(pcm: bytes, sample_rate: int) -> None:
    """Raise InvalidAudio unless ``pcm`` is PCM16 mono at a supported rate, at most 1 s long."""
    if sample_rate not in SUPPORTED_INPUT_RATES:
        rates = ", ".join(str(r) for r in sorted(SUPPORTED_INPUT_RATES))
        raise InvalidAudio(f"unsupported sample rate {sample_rate} Hz (supported: {rates})")
    if len(pcm) % BYTES_PER_SAMPLE:
        raise InvalidAudio(f"PCM16 audio needs an even number of bytes, got {len(pcm)}")
    limit = int(sample_rate * MAX_CHUNK_SECONDS) * BYTES_PER_SAMPLE
    if len(pcm) > limit:
        raise InvalidAudio(
            f"audio chunk of {len(pcm)} bytes is {len(pcm) / BYTES_PER_SAMPLE / sample_rate:.2f} s; "
            f"at most {MAX_CHUNK_SECONDS:.0f} s ({limit} bytes at {sample_rate} Hz) per chunk"
        )


def samples(pcm: bytes) -> np.ndarray:
    """int16 view of PCM16LE bytes (read-only, no copy)."""
    return np.frombuffer(pcm, dtype="<i2")


def to_float32(pcm: bytes) -> np.ndarray:
    """Samples scaled to [-1, 1) as a fresh, writable float32 array."""
    return samples(pcm).astype(np.float32) / 32768.0


def frame_bytes(sample_rate: int, frame_ms: int) -> int:
    return sample_rate * frame_ms // 1000 * BYTES_PER_SAMPLE
