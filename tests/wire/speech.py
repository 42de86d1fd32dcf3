"""Audio for the local wire-protocol servers: espeak-ng speech out, scripted or pocketsphinx text in.

Synthesis is deterministic (espeak-ng, resampled with soxr). Recognition answers
each utterance with the next scripted transcript when a test queued one, so tests
can assert exact text; otherwise pocketsphinx honestly transcribes the audio.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any

import numpy as np
import soxr

PCM_WIDTH = 2


def _wav_payload(wav: bytes) -> tuple[bytes, int]:
    """PCM and rate of espeak-ng's --stdout WAV (its header carries placeholder sizes, so scan for data)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a WAV stream")
    rate = struct.unpack_from("<I", wav, 24)[0]
    data = wav.find(b"data", 12)
    if data < 0:
        raise ValueError("WAV stream without a data chunk")
    pcm = wav[data + 8 :]
    return pcm[: len(pcm) - len(pcm) % PCM_WIDTH], rate


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    if from_rate == to_rate:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    return bytes(soxr.resample(samples, from_rate, to_rate).astype("<i2").tobytes())


async def espeak_pcm(text: str, sample_rate: int, voice: str = "en") -> bytes:
    """PCM16 mono of ``text`` spoken by espeak-ng at ``sample_rate``."""
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng",
        "--stdout",
        "-v",
        voice or "en",
        text,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
    pcm, rate = _wav_payload(out)
    return await asyncio.to_thread(resample, pcm, rate, sample_rate)


def _new_decoder() -> Any:
    from pocketsphinx import Decoder  # loading the model takes ~0.4 s: only when a test needs it

    return Decoder(samprate=16000, loglevel="FATAL")


class Recognizer:
    """Transcripts for the servers: scripted ones first (one per utterance), else pocketsphinx."""

    def __init__(self) -> None:
        self.scripted: deque[str] = deque()
        self._decoder: Any = None
        self._lock = asyncio.Lock()

    def script(self, *transcripts: str) -> None:
        self.scripted.extend(transcripts)

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Whole-utterance transcription (the OpenAI transcriptions endpoint)."""
        if self.scripted:
            return self.scripted.popleft()
        return await self.pocketsphinx(pcm, sample_rate)

    async def pocketsphinx(self, pcm: bytes, sample_rate: int) -> str:
        async with self._lock:
            if self._decoder is None:
                self._decoder = await asyncio.to_thread(_new_decoder)
            return await asyncio.to_thread(_decode, self._decoder, resample(pcm, sample_rate, 16000))

    def segment(self, sample_rate: int) -> Segment:
        """A streaming recognition of one segment (the Deepgram listen socket)."""
        return Segment(self, sample_rate)


def _decode(decoder: Any, pcm16k: bytes) -> str:
    decoder.start_utt()
    decoder.process_raw(pcm16k, False, True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return str(hyp.hypstr) if hyp is not None else ""


class Segment:
    """Audio of one Deepgram result segment. Scripted segments reveal one more word per interim
    result; unscripted ones run pocketsphinx incrementally (its partial hypothesis is the interim)."""

    def __init__(self, recognizer: Recognizer, sample_rate: int) -> None:
        self._recognizer = recognizer
        self._rate = sample_rate
        self._audio = bytearray()
        self._interims = 0

    @property
    def seconds(self) -> float:
        return len(self._audio) / PCM_WIDTH / self._rate

    def feed(self, pcm: bytes) -> None:
        self._audio.extend(pcm)

    async def partial(self) -> str:
        self._interims += 1
        if self._recognizer.scripted:
            words = self._recognizer.scripted[0].split()
            return " ".join(words[: min(self._interims, len(words))])
        return await self._recognizer.pocketsphinx(bytes(self._audio), self._rate)

    async def final(self) -> str:
        return await self._recognizer.transcribe(bytes(self._audio), self._rate)
