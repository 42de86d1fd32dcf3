"""Zero-latency STT and TTS for benchmarks and tests: no model, no I/O.

The platform's own latency is what remains when these stand in for real
providers. ``delay_ms`` adds a fixed provider latency (final transcript after
finalize, first audio after the request) to model a real provider; ``fail:
"true"`` makes every call raise ProviderError, a fault-injection switch for
fallback drills.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import AsyncIterator

import numpy as np

from ..config import STTProvider, TTSProvider
from .base import ProviderError, STTStream, Transcript


def _fails(options: dict[str, str]) -> bool:
    return options.get("fail", "").lower() in {"1", "true", "yes"}


class _SyntheticSTTStream:
    def __init__(self, transcript: str, delay: float) -> None:
        self._transcript = transcript
        self._delay = delay
        self._events: asyncio.Queue[Transcript | None] = asyncio.Queue()

    async def push(self, pcm: bytes) -> None:
        """The audio is not listened to: the transcript is fixed."""

    async def finalize(self) -> None:
        final = Transcript(self._transcript, final=True)
        if self._delay:
            asyncio.get_running_loop().call_later(self._delay, self._events.put_nowait, final)
        else:
            self._events.put_nowait(final)

    async def events(self) -> AsyncIterator[Transcript]:
        while (item := await self._events.get()) is not None:
            yield item

    async def aclose(self) -> None:
        self._events.put_nowait(None)


class SyntheticSTT:
    """Answers every utterance with ``options["transcript"]`` as soon as it is finalized."""

    sample_rate = 16000

    def __init__(self, choice: STTProvider) -> None:
        self.name = "synthetic"
        self.transcript = choice.options.get("transcript", "hello")
        self.delay = float(choice.options.get("delay_ms", "0")) / 1000
        self._fail = _fails(choice.options)

    async def open_stream(self) -> STTStream:
        if self._fail:
            raise ProviderError("synthetic STT configured to fail")
        return _SyntheticSTTStream(self.transcript, self.delay)


class SyntheticTTS:
    """A deterministic tone whose length is proportional to the text (``ms_per_char``, default 60).

    Each word is a tone burst with a short gap after it, so the audio has the
    rhythm of speech for VADs and word-proportional played-text tracking.
    """

    def __init__(self, choice: TTSProvider) -> None:
        self.name = "synthetic"
        self.sample_rate = int(choice.options.get("sample_rate", "24000"))
        self.ms_per_char = float(choice.options.get("ms_per_char", "60"))
        self.delay = float(choice.options.get("delay_ms", "0")) / 1000
        self._fail = _fails(choice.options)
        self._piece_samples = self.sample_rate // 5  # stream in 200 ms pieces

    @functools.lru_cache(maxsize=256)  # noqa: B019 - providers live as long as the pod; answers repeat
    def render(self, text: str) -> np.ndarray:
        """The audio of ``text`` (cached: deterministic, and benchmarks repeat their phrases)."""
        words = text.split()
        parts: list[np.ndarray] = []
        for i, word in enumerate(words):
            # +1 char for the space after each word keeps the length proportional to the text.
            n = int(self.sample_rate * self.ms_per_char * (len(word) + 1) / 1000)
            gap = min(n // 4, self.sample_rate * 30 // 1000)
            t = np.arange(n - gap) / self.sample_rate
            freq = 180.0 + 40.0 * (i % 5)
            tone = 0.3 * np.sin(2 * math.pi * freq * t) + 0.1 * np.sin(2 * math.pi * 3 * freq * t)
            parts.append(tone)
            parts.append(np.zeros(gap))
        audio = np.concatenate(parts) if parts else np.zeros(0)
        out = (audio * 32767).astype("<i2")
        out.flags.writeable = False  # shared through the cache
        return out

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if self._fail:
            raise ProviderError("synthetic TTS configured to fail")
        audio = self.render(text)
        if self.delay:
            await asyncio.sleep(self.delay)
        for start in range(0, len(audio), self._piece_samples):
            yield audio[start : start + self._piece_samples].tobytes()
