"""Offline streaming STT with pocketsphinx (CMU Sphinx, English model bundled in the package).

Decoding runs in worker threads, never on the event loop. A decoder takes
~0.3 s to load, so the decoders of closed streams are kept for the next
session. With a ``vocabulary`` the decoder only hears those phrases (a JSGF
grammar, see sphinx.py): the general model is weak on synthetic speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pocketsphinx import Decoder

from ..config import STTProvider
from .base import ProviderError, STTStream, Transcript
from .sphinx import SAMPLE_RATE, make_decoder, vocabulary_phrases

# Audio is decoded in batches of this many bytes (100 ms) to keep thread hand-offs few.
BATCH_BYTES = SAMPLE_RATE // 10 * 2
MAX_IDLE_DECODERS = 8


class _Stream:
    def __init__(self, owner: PocketsphinxSTT, decoder: Decoder) -> None:
        self._owner = owner
        self._decoder: Decoder | None = decoder
        self._events: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._pending = bytearray()
        self._in_utt = False
        self._partial = ""

    def _process(self, pcm: bytes) -> str:
        assert self._decoder is not None
        if not self._in_utt:
            self._decoder.start_utt()
            self._in_utt = True
        self._decoder.process_raw(pcm)
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def _end(self) -> str:
        assert self._decoder is not None
        if not self._in_utt:
            return ""
        self._decoder.end_utt()
        self._in_utt = False
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    async def push(self, pcm: bytes) -> None:
        if self._decoder is None:
            raise ProviderError("pocketsphinx stream is closed")
        self._pending += pcm
        if len(self._pending) < BATCH_BYTES:
            return
        batch = bytes(self._pending)
        self._pending.clear()
        partial = await asyncio.to_thread(self._process, batch)
        if partial and partial != self._partial:
            self._partial = partial
            self._events.put_nowait(Transcript(partial, final=False))

    async def finalize(self) -> None:
        if self._decoder is None:
            raise ProviderError("pocketsphinx stream is closed")
        batch = bytes(self._pending)
        self._pending.clear()
        if batch:
            await asyncio.to_thread(self._process, batch)
        text = await asyncio.to_thread(self._end)
        self._partial = ""
        self._events.put_nowait(Transcript(text, final=True))

    async def events(self) -> AsyncIterator[Transcript]:
        while (item := await self._events.get()) is not None:
            yield item

    async def aclose(self) -> None:
        decoder, self._decoder = self._decoder, None
        self._events.put_nowait(None)
        if decoder is not None:
            if self._in_utt:
                await asyncio.to_thread(decoder.end_utt)
            self._owner.release(decoder)


class PocketsphinxSTT:
    sample_rate = SAMPLE_RATE

    def __init__(self, choice: STTProvider) -> None:
        self.name = "pocketsphinx"
        if not choice.language.lower().startswith("en"):
            raise ProviderError(f"pocketsphinx has an English model only, not {choice.language!r}")
        # Checked once here (phrases the dictionary cannot pronounce are logged and left out).
        self.phrases = vocabulary_phrases(list(choice.vocabulary))
        if choice.vocabulary and not self.phrases:
            raise ProviderError("pocketsphinx: no vocabulary phrase is in the pronunciation dictionary")
        self._idle: list[Decoder] = []

    async def open_stream(self) -> STTStream:
        decoder = self._idle.pop() if self._idle else await asyncio.to_thread(make_decoder, self.phrases)
        return _Stream(self, decoder)

    def release(self, decoder: Decoder) -> None:
        if len(self._idle) < MAX_IDLE_DECODERS:
            self._idle.append(decoder)
