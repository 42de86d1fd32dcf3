"""Reading a WAV stream as it arrives (e.g. ``espeak-ng --stdout``, whose header has no real length)."""

from __future__ import annotations

import io
import wave

# RIFF header + fmt chunk + the data chunk header; the fmt chunk may be longer than 16 bytes.
MAX_HEADER_BYTES = 4096


class WavStreamError(ValueError):
    pass


class WavStream:
    """Feed bytes; get PCM16 mono payload bytes out once the header has been parsed."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.sample_rate: int | None = None

    def feed(self, data: bytes) -> bytes:
        if self.sample_rate is not None:
            return data
        self._head += data
        pos = self._head.find(b"data")
        if pos < 0 or len(self._head) < pos + 8:
            if len(self._head) > MAX_HEADER_BYTES:
                raise WavStreamError("no WAV data chunk in the first 4 KiB")
            return b""
        start = pos + 8
        # The stdlib parser reads the header; the payload length it would check is bogus in streams.
        try:
            with wave.open(io.BytesIO(bytes(self._head[:start])), "rb") as w:
                channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        except (wave.Error, EOFError) as exc:
            raise WavStreamError(f"bad WAV header: {exc}") from exc
        if channels != 1 or width != 2:
            raise WavStreamError(f"expected PCM16 mono WAV, got {channels} channel(s) of {width * 8} bits")
        self.sample_rate = rate
        payload = bytes(self._head[start:])
        self._head.clear()
        return payload
