"""Fallback chains: per stage, an error or a timeout before the first output moves to the next provider.

Once a provider has produced output, a later failure is not retried elsewhere
(the caller would hear a sentence twice); it surfaces as ProviderError. Every
failure counts in voicefleet_provider_errors_total and every hand-over in
voicefleet_provider_fallbacks_total.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .. import pipeline_metrics
from ..audio.resample import StreamResampler
from ..config import LLMStage, STTStage, ToolSpec, TTSStage, VADStage
from ..conversation import ChatMessage
from .base import LLM, STT, TTS, VAD, LLMChunk, ProviderError, STTStream, Transcript, VADFactory

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
P = TypeVar("P")


def stage_timeouts(stage: STTStage | LLMStage | TTSStage | VADStage) -> list[float]:
    """Timeouts of a stage's chain, first choice first (aligned with the providers build_providers makes)."""
    return [stage.timeout_seconds, *(choice.timeout_seconds for choice in stage.fallback)]


@dataclass(frozen=True)
class Link(Generic[P]):
    provider: P
    name: str
    timeout: float


def chain(providers: Sequence[P], timeouts: Sequence[float]) -> list[Link[P]]:
    return [
        Link(
            p,
            str(getattr(p, "name", type(p).__name__)),
            timeouts[i] if i < len(timeouts) else DEFAULT_TIMEOUT,
        )
        for i, p in enumerate(providers)
    ]


def record_failure(stage: str, names: Sequence[str], index: int, exc: BaseException) -> None:
    failed = names[index]
    pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage=stage, provider=failed).inc()
    if index + 1 < len(names):
        nxt = names[index + 1]
        pipeline_metrics.PROVIDER_FALLBACKS_TOTAL.labels(
            stage=stage, from_provider=failed, to_provider=nxt
        ).inc()
        log.warning("%s provider %s failed (%s); falling back to %s", stage, failed, _describe(exc), nxt)
    else:
        log.warning("%s provider %s failed (%s); no fallback left", stage, failed, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


async def _first_output(it: AsyncIterator[P], limit: float) -> tuple[bool, P | None]:
    """(True, first item) or (False, None) for an empty stream; raises on error or after ``limit`` s."""
    try:
        async with asyncio.timeout(limit):
            return True, await anext(it)
    except StopAsyncIteration:
        return False, None


async def _aclose(it: AsyncIterator[object]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class FallbackLLM:
    def __init__(self, links: list[Link[LLM]]) -> None:
        self.links = links

    async def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        if not self.links:
            raise ProviderError("no LLM provider configured")
        for i, link in enumerate(self.links):
            it = aiter(link.provider.stream(messages, tools))
            try:
                got, first = await _first_output(it, link.timeout)
            except Exception as exc:
                await _aclose(it)
                record_failure("llm", [lk.name for lk in self.links], i, exc)
                continue
            try:
                if got and first is not None:
                    yield first
                    async for chunk in it:
                        yield chunk
            except ProviderError:
                pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="llm", provider=link.name).inc()
                raise
            except Exception as exc:
                pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="llm", provider=link.name).inc()
                raise ProviderError(f"LLM {link.name} failed mid-answer: {exc}") from exc
            finally:
                await _aclose(it)
            return
        raise ProviderError("every LLM provider failed")


class FallbackTTS:
    """Yields (pcm, sample_rate): providers of one chain may speak at different rates."""

    def __init__(self, links: list[Link[TTS]]) -> None:
        self.links = links

    async def synthesize(self, text: str) -> AsyncIterator[tuple[bytes, int]]:
        if not self.links:
            raise ProviderError("no TTS provider configured")
        for i, link in enumerate(self.links):
            it = aiter(link.provider.synthesize(text))
            try:
                got, first = await _first_output(it, link.timeout)
            except Exception as exc:
                await _aclose(it)
                record_failure("tts", [lk.name for lk in self.links], i, exc)
                continue
            rate = link.provider.sample_rate
            try:
                if got and first is not None:
                    yield first, rate
                    async for pcm in it:
                        yield pcm, rate
            except ProviderError:
                pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="tts", provider=link.name).inc()
                raise
            except Exception as exc:
                pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="tts", provider=link.name).inc()
                raise ProviderError(f"TTS {link.name} failed mid-utterance: {exc}") from exc
            finally:
                await _aclose(it)
            return
        raise ProviderError("every TTS provider failed")


def first_vad(factories: Sequence[VADFactory]) -> tuple[VAD, int]:
    """The first VAD whose factory works, with its index in the chain."""
    errors: list[str] = []
    for i, factory in enumerate(factories):
        try:
            return factory(), i
        except Exception as exc:
            name = getattr(getattr(factory, "func", factory), "name", str(i))
            pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="vad", provider=name).inc()
            errors.append(f"{type(exc).__name__}: {exc}")
    raise ProviderError("no VAD could be created: " + "; ".join(errors) if errors else "no VAD configured")


class STTChain:
    """Utterance-oriented streaming STT over a fallback chain.

    Audio arrives at ``input_rate`` and is resampled per provider. The audio of
    the current utterance is kept so that, when a provider fails or misses its
    deadline for the final transcript, the next provider hears the whole
    utterance again. After a failure the chain stays on the fallback for the
    rest of the session.

    A provider's stream takes one utterance after another: ``finalize()`` ends
    the current one and one final Transcript (possibly empty) follows it. Final
    segments a provider emits before finalize() (its own endpointing) are kept
    and joined with that last one.
    """

    def __init__(self, links: list[Link[STT]], input_rate: int, on_interim: Callable[[str], None]) -> None:
        self.links = links
        self.input_rate = input_rate
        self.on_interim = on_interim
        self.index = 0
        self._stream: STTStream | None = None
        self._resampler: StreamResampler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[str] | None = None
        self._utterance: list[bytes] = []
        self._utterance_bytes = 0
        self._finals: list[str] = []

    @property
    def name(self) -> str:
        return self.links[self.index].name if self.available else "none"

    @property
    def utterance_bytes(self) -> int:
        """Audio of the current utterance kept for a failover (the session bounds the utterance)."""
        return self._utterance_bytes

    @property
    def available(self) -> bool:
        return self.index < len(self.links)

    async def open(self) -> None:
        while self.available:
            try:
                await self._open_current()
                return
            except Exception as exc:
                await self._close_stream()
                self._fail(exc)
        raise ProviderError("every STT provider failed")

    async def _open_current(self) -> None:
        link = self.links[self.index]
        self._error = None
        async with asyncio.timeout(link.timeout):  # not wait_for: 3.11's can lose a cancellation
            self._stream = await link.provider.open_stream()
        self._resampler = StreamResampler(self.input_rate, link.provider.sample_rate)
        self._reader = asyncio.create_task(self._read(self._stream), name=f"stt-reader-{link.name}")

    async def _read(self, stream: STTStream) -> None:
        try:
            async for transcript in stream.events():
                self._take(transcript)
            raise ProviderError("STT stream ended")
        except Exception as exc:
            self._error = exc
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc)

    def _take(self, t: Transcript) -> None:
        text = t.text.strip()
        if not t.final:
            if text:
                self.on_interim(" ".join([*self._finals, text]))
            return
        if text:
            self._finals.append(text)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(" ".join(self._finals))

    def _fail(self, exc: BaseException) -> None:
        record_failure("stt", [lk.name for lk in self.links], self.index, exc)
        self.index += 1

    async def _close_stream(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def _failover(self, exc: BaseException) -> None:
        """Move to the next provider and replay the current utterance to it."""
        await self._close_stream()
        self._fail(exc)
        await self._reopen()

    async def _reopen(self) -> None:
        """Open a stream on the current (or next working) provider and give it the utterance so far."""
        self._finals = []
        await self.open()
        assert self._stream is not None and self._resampler is not None
        for pcm in self._utterance:
            await self._stream.push(self._resampler.process(pcm))

    async def push(self, pcm: bytes) -> None:
        self._utterance.append(pcm)
        self._utterance_bytes += len(pcm)
        if self._stream is None:
            await self._reopen()
            return
        assert self._resampler is not None
        try:
            if self._error is not None:
                raise self._error
            await self._stream.push(self._resampler.process(pcm))
        except Exception as exc:
            await self._failover(exc)  # the chunk is already part of the utterance: the failover replays it

    async def finish_utterance(self) -> str:
        """End the utterance and return its final transcript (ProviderError when every provider failed)."""
        try:
            if self._stream is None:
                await self._reopen()
            while True:
                link = self.links[self.index]
                try:
                    async with asyncio.timeout(link.timeout):
                        return await self._final()
                except Exception as exc:
                    await self._failover(exc)
        finally:
            self._utterance = []
            self._utterance_bytes = 0
            self._finals = []

    async def _final(self) -> str:
        assert self._stream is not None and self._resampler is not None
        if self._error is not None:
            raise self._error
        tail = self._resampler.flush()
        # flush() ended the soxr stream: the next utterance gets a fresh resampler.
        self._resampler = StreamResampler(self.input_rate, self.links[self.index].provider.sample_rate)
        if tail:
            await self._stream.push(tail)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._stream.finalize()
            return await self._waiter
        finally:
            self._waiter = None

    async def aclose(self) -> None:
        await self._close_stream()
