"""G.711 mu-law <-> PCM16 (ITU-T G.711), by lookup tables: one numpy indexing per 20 ms frame.

Phone carriers stream mu-law at 8 kHz: one byte per sample, 160 bytes per 20 ms frame.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160: one byte each in mu-law
_BIAS = 0x84
_CLIP14 = 8159
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype("<i2")


def _encode_table() -> np.ndarray:
    """Code of every 16-bit sample value, indexed by ``sample + 32768`` (G.711 works on 14 bits)."""
    value = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _CLIP14) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)  # 0..7
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment > 7, 0x7F, code)  # beyond the last segment: the loudest code
    return (code ^ mask).astype(np.uint8)


_DECODE = _decode_table()
_ENCODE = _encode_table()


def decode(mulaw: bytes) -> bytes:
    """mu-law bytes -> PCM16 little-endian, same sample count."""
    return _DECODE[np.frombuffer(mulaw, dtype=np.uint8)].tobytes()


def encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> mu-law bytes (an odd trailing byte is ignored)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int32)
    return _ENCODE[samples + 32768].tobytes()
