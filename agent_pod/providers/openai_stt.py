"""OpenAI transcriptions (whisper-1, gpt-4o-transcribe, ...) as the pipeline's STT.

The transcriptions API takes whole files, so each utterance is buffered and sent
as a WAV on finalize(). Models that stream their transcript (every model but
whisper-1) are asked to, and their deltas become partial Transcripts. The
stage's vocabulary biases recognition through the ``prompt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import wave
from collections.abc import AsyncIterator

import openai
from openai import omit

from ..config import STTProvider
from .base import ProviderError, STTStream, Transcript
from .openai_common import SDK_ERRORS, make_client, provider_error, require

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini-transcribe"
SAMPLE_RATE = 16000
# The API refuses files over 25 MB; at 16 kHz PCM16 that is about 13 minutes of speech.
MAX_UTTERANCE_BYTES = 24 * 1024 * 1024


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def streams_transcript(model: str) -> bool:
    """whisper-1 answers in one piece; the gpt-4o transcribe models can stream deltas."""
    return not model.startswith("whisper")


def vocabulary_prompt(vocabulary: list[str]) -> str:
    """The prompt that biases recognition towards the domain words (the API reads it as prior text)."""
    return ", ".join(w.strip() for w in vocabulary if w.strip())


class OpenAISTTStream:
    """One session's utterances, transcribed in order by a single worker task."""

    def __init__(self, client: openai.AsyncOpenAI, choice: STTProvider, model: str) -> None:
        self._client = client
        self._choice = choice
        self._model = model
        self._prompt = vocabulary_prompt(choice.vocabulary)
        self._audio = bytearray()
        self._utterances: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._events: asyncio.Queue[Transcript | ProviderError | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name="openai-stt")
        self._closed = False

    def _check_open(self) -> None:
        if self._closed or self._worker.done():
            raise ProviderError("openai transcription: stream is closed or failed")

    async def push(self, pcm: bytes) -> None:
        self._check_open()
        if len(self._audio) + len(pcm) > MAX_UTTERANCE_BYTES:
            raise ProviderError("openai transcription: utterance longer than the API accepts")
        self._audio.extend(pcm)

    async def finalize(self) -> None:
        self._check_open()
        audio, self._audio = bytes(self._audio), bytearray()
        self._utterances.put_nowait(audio)

    async def events(self) -> AsyncIterator[Transcript]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._events.put_nowait(None)

    async def _work(self) -> None:
        while (audio := await self._utterances.get()) is not None:
            try:
                await self._transcribe(audio)
            except SDK_ERRORS as exc:
                self._events.put_nowait(provider_error("transcription", exc))
                return
            except ProviderError as exc:
                self._events.put_nowait(exc)
                return
            except Exception as exc:  # a worker must never die silently: the session waits on it
                log.exception("openai transcription: unexpected failure")
                self._events.put_nowait(ProviderError(f"openai transcription: {type(exc).__name__}"))
                return

    async def _transcribe(self, audio: bytes) -> None:
        if not audio:  # nothing was said: no request, an empty final keeps the one-final-per-utterance rule
            self._events.put_nowait(Transcript("", final=True))
            return
        file = ("utterance.wav", wav_bytes(audio, SAMPLE_RATE), "audio/wav")
        language = self._choice.language.split("-")[0] or omit
        prompt = self._prompt or omit
        if not streams_transcript(self._model):
            result = await self._client.audio.transcriptions.create(
                file=file, model=self._model, language=language, prompt=prompt
            )
            self._events.put_nowait(Transcript(result.text, final=True))
            return
        stream = await self._client.audio.transcriptions.create(
            file=file, model=self._model, language=language, prompt=prompt, stream=True
        )
        text = ""
        try:
            async for event in stream:
                if event.type == "transcript.text.delta":
                    text += event.delta
                    self._events.put_nowait(Transcript(text, final=False))
                elif event.type == "transcript.text.done":
                    self._events.put_nowait(Transcript(event.text, final=True))
                    return
        finally:
            await stream.close()
        raise ProviderError("openai transcription stream: ended without a final transcript")


class OpenAISTT:
    """Speech-to-text through the OpenAI transcriptions endpoint (or a compatible server)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, choice: STTProvider) -> None:
        self.name = "openai"
        self._choice = choice
        self._model = choice.model or DEFAULT_MODEL
        self._client = make_client(choice, "stt")

    async def open_stream(self) -> STTStream:
        return OpenAISTTStream(require(self._client, "transcription"), self._choice, self._model)
