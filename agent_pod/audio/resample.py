"""Streaming resampling of PCM16 mono with soxr.

Quality is chosen for steady, low-delay output: soxr's higher qualities buffer
internally and release audio in lumps of 30-60 ms, which would delay VAD
decisions and barge-in. "LQ" keeps a proper anti-aliasing filter with a steady
~10 ms delay for the downsampling and the TTS upsampling pairs; for small
integer upsampling ratios (8 kHz -> 16 kHz) it turns lumpy too, so "QQ"
(cubic) is used there: 8 kHz audio has no content the cubic images would hide.
"""

from __future__ import annotations

import numpy as np
import soxr

from .pcm import samples


def _quality(in_rate: int, out_rate: int) -> str:
    if out_rate > in_rate and out_rate % in_rate == 0:
        return "QQ"
    return "LQ"


class StreamResampler:
    """PCM16 bytes in at ``in_rate``, PCM16 bytes out at ``out_rate``; keeps filter state between chunks."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=_quality(in_rate, out_rate))
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(samples(pcm), last=last)
        return np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        """The tail still inside the filter (end of a stream)."""
        return self.process(b"", last=True)


class Framer:
    """Cuts a byte stream into fixed-size frames, keeping the remainder for the next push."""

    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        n = len(self._pending) // self.frame_bytes * self.frame_bytes
        if not n:
            return []
        chunk = bytes(self._pending[:n])
        del self._pending[:n]
        return [chunk[i : i + self.frame_bytes] for i in range(0, n, self.frame_bytes)]

    def flush_padded(self) -> tuple[bytes, int] | None:
        """(the remainder padded with silence to a whole frame, its real byte count), or None when empty."""
        if not self._pending:
            return None
        real = len(self._pending)
        frame = bytes(self._pending) + b"\x00" * (self.frame_bytes - real)
        self._pending.clear()
        return frame, real

    def clear(self) -> None:
        self._pending.clear()
