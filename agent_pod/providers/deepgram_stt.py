"""Deepgram live transcription (listen v1 WebSocket) as the pipeline's streaming STT.

One socket per session carries utterance after utterance. Deepgram finalizes
segments on its own (``is_final``) and, on our Finalize, flushes what it still
holds (``from_finalize``). The final Transcript of an utterance is every final
segment since the previous one, joined, and is emitted once the segments cover
all the audio sent before finalize() (or Deepgram's flush reply arrives). Deepgram
does not always answer a Finalize when little audio is buffered, so after a short
grace the segments at hand make the final. KeepAlive keeps a quiet socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from deepgram.core.request_options import RequestOptions
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from deepgram.listen.v1.types import ListenV1Error, ListenV1Results

from ..config import STTProvider
from .base import ProviderError, STTStream, Transcript
from .deepgram_common import SDK_ERRORS, make_client, provider_error, require, sample_rate_option

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nova-3"
DEFAULT_SAMPLE_RATE = 16000
KEEPALIVE_SECONDS = 4.0  # Deepgram closes a socket that hears nothing for 10 s
FINALIZE_GRACE_SECONDS = 1.0
# Audio left unfinalized below this is a rounding tail, not speech waiting for a result.
COVERAGE_SLACK_SECONDS = 0.1
# Query parameters this provider sets itself; other options pass through to Deepgram.
_OWN_PARAMS = {
    "model",
    "encoding",
    "sample_rate",
    "channels",
    "interim_results",
    "language",
    "keyterm",
    "keywords",
}


def vocabulary_params(model: str, vocabulary: list[str]) -> dict[str, list[str]]:
    """Nova-3 takes ``keyterm`` (plain terms); older models take ``keywords``."""
    terms = [w.strip() for w in vocabulary if w.strip()]
    if not terms:
        return {}
    return {"keyterm": terms} if model.startswith(("nova-3", "flux")) else {"keywords": terms}


def passthrough_params(options: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in options.items() if k not in _OWN_PARAMS}


@dataclass
class UtteranceText:
    """Deepgram results -> our Transcripts: partials as they come, one final per finalize()."""

    committed: list[str] = field(default_factory=list)
    covered: float = 0.0  # stream audio seconds that final segments account for
    pending: deque[float] = field(default_factory=deque)  # audio end each awaited final must cover
    finals: int = 0  # finals emitted so far (the n-th finalize() is answered by the n-th final)

    def result(
        self, text: str, start: float, duration: float, is_final: bool, from_finalize: bool
    ) -> list[Transcript]:
        text = text.strip()
        if not is_final:
            return [Transcript(" ".join([*self.committed, text]), final=False)] if text else []
        if text:
            self.committed.append(text)
        self.covered = max(self.covered, start + duration)
        out = self._resolve(flushed=from_finalize)
        if not out and text:
            out.append(Transcript(" ".join(self.committed), final=False))
        return out

    def finalize(self, sent_seconds: float) -> list[Transcript]:
        self.pending.append(sent_seconds)
        return self._resolve(flushed=False)

    def expire(self, finalize_number: int) -> list[Transcript]:
        """The grace after the n-th finalize() ran out: if it is still unanswered, the segments
        at hand make its final (and the finals of any earlier ones still waiting)."""
        out = []
        while self.pending and self.finals < finalize_number:
            out.append(self._final())
        return out

    def _resolve(self, flushed: bool) -> list[Transcript]:
        out = []
        while self.pending and (flushed or self.covered >= self.pending[0] - COVERAGE_SLACK_SECONDS):
            out.append(self._final())
            flushed = False  # one flush reply answers one Finalize
        return out

    def _final(self) -> Transcript:
        self.pending.popleft()
        self.finals += 1
        text, self.committed = " ".join(self.committed), []
        return Transcript(text, final=True)


class DeepgramSTTStream:
    def __init__(
        self,
        socket: AsyncV1SocketClient,
        exits: contextlib.AsyncExitStack,
        sample_rate: int,
        keepalive_seconds: float,
        finalize_grace_seconds: float,
    ) -> None:
        self._socket = socket
        self._exits = exits
        self._rate = sample_rate
        self._keepalive_seconds = keepalive_seconds
        self._grace = finalize_grace_seconds
        self._text = UtteranceText()
        self._sent_seconds = 0.0
        self._last_send = time.monotonic()
        self._events: asyncio.Queue[Transcript | ProviderError | None] = asyncio.Queue()
        self._error: ProviderError | None = None
        self._closing = False
        self._finalizes = 0
        self._grace_timers: dict[int, asyncio.TimerHandle] = {}
        self._reader = asyncio.create_task(self._read(), name="deepgram-listen-reader")
        self._keepalive = asyncio.create_task(self._keep_alive(), name="deepgram-listen-keepalive")

    async def push(self, pcm: bytes) -> None:
        self._check()
        await self._send(self._socket.send_media(pcm))
        self._sent_seconds += len(pcm) / 2 / self._rate

    async def finalize(self) -> None:
        self._check()
        await self._send(self._socket.send_finalize())
        self._finalizes += 1
        self._emit(self._text.finalize(self._sent_seconds))
        if self._text.pending:
            loop = asyncio.get_running_loop()
            self._grace_timers[self._finalizes] = loop.call_later(self._grace, self._expire, self._finalizes)

    async def events(self) -> AsyncIterator[Transcript]:
        while (item := await self._events.get()) is not None:
            if isinstance(item, ProviderError):
                raise item
            yield item

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        for timer in self._grace_timers.values():
            timer.cancel()
        self._keepalive.cancel()
        if self._error is None:
            with contextlib.suppress(*SDK_ERRORS):
                await self._socket.send_close_stream()
                # Deepgram flushes, sends Metadata and closes: the reader sees the end.
                async with asyncio.timeout(self._grace):
                    await asyncio.shield(self._reader)
        self._reader.cancel()
        with contextlib.suppress(*SDK_ERRORS):
            await self._exits.aclose()
        for task in (self._reader, self._keepalive):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._events.put_nowait(None)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise ProviderError("deepgram listen: stream is closed")

    async def _send(self, sending: Any) -> None:
        try:
            await sending
        except SDK_ERRORS as exc:
            error = provider_error("listen", exc)
            self._fail(error)
            raise error from None
        self._last_send = time.monotonic()

    def _emit(self, transcripts: list[Transcript]) -> None:
        for t in transcripts:
            self._events.put_nowait(t)

    def _expire(self, finalize_number: int) -> None:
        del self._grace_timers[finalize_number]
        if self._closing or self._error is not None:
            return
        finals = self._text.expire(finalize_number)
        if finals:
            log.info("deepgram listen: no flush reply to Finalize; final made of the segments received")
        self._emit(finals)

    def _fail(self, error: ProviderError) -> None:
        if self._error is None and not self._closing:
            self._error = error
            self._events.put_nowait(error)

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                if isinstance(message, ListenV1Results):
                    alternatives = message.channel.alternatives
                    self._emit(
                        self._text.result(
                            alternatives[0].transcript if alternatives else "",
                            message.start,
                            message.duration,
                            bool(message.is_final),
                            bool(message.from_finalize),
                        )
                    )
                elif isinstance(message, ListenV1Error):
                    self._fail(ProviderError(f"deepgram listen: {message.variant}: {message.description}"))
                    return
            if not self._closing:
                self._fail(ProviderError("deepgram listen: the server closed the stream"))
        except SDK_ERRORS as exc:
            self._fail(provider_error("listen", exc))
        except Exception as exc:  # the reader must never die silently: the session waits on it
            log.exception("deepgram listen: unexpected failure reading results")
            self._fail(ProviderError(f"deepgram listen: {type(exc).__name__}"))

    async def _keep_alive(self) -> None:
        while True:
            idle = time.monotonic() - self._last_send
            if idle < self._keepalive_seconds:
                await asyncio.sleep(self._keepalive_seconds - idle)
                continue
            try:
                await self._send(self._socket.send_keep_alive())
            except ProviderError:
                return


class DeepgramSTT:
    """Streaming speech-to-text over Deepgram's listen WebSocket (linear16, interim results)."""

    def __init__(
        self,
        choice: STTProvider,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        finalize_grace_seconds: float = FINALIZE_GRACE_SECONDS,
    ) -> None:
        self.name = "deepgram"
        self._choice = choice
        self._model = choice.model or DEFAULT_MODEL
        self.sample_rate = sample_rate_option(choice.options, DEFAULT_SAMPLE_RATE)
        self._keepalive_seconds = keepalive_seconds
        self._grace = finalize_grace_seconds
        self._client = make_client(choice, "stt")
        self._vocabulary = vocabulary_params(self._model, choice.vocabulary)
        self._extra: RequestOptions = {"additional_query_parameters": passthrough_params(choice.options)}

    async def open_stream(self) -> STTStream:
        client = require(self._client, "listen")
        exits = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self._choice.timeout_seconds):
                socket = await exits.enter_async_context(
                    client.listen.v1.connect(
                        model=self._model,
                        encoding="linear16",
                        sample_rate=self.sample_rate,
                        channels=1,
                        interim_results="true",
                        language=self._choice.language or None,
                        request_options=self._extra,
                        **self._vocabulary,
                    )
                )
        except SDK_ERRORS as exc:
            with contextlib.suppress(*SDK_ERRORS):
                await exits.aclose()
            raise provider_error("listen", exc) from None
        return DeepgramSTTStream(socket, exits, self.sample_rate, self._keepalive_seconds, self._grace)
