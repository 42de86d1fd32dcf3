"""A carrier's Media Streams WebSocket: one phone call, admitted through the session hub.

GET /v1/telephony/{carrier}/stream upgrades to a WebSocket. The carrier's start event (Vonage:
``websocket:connected``) must come within ``startTimeoutSeconds`` and carry the session id and resume
token the webhook put in its parameters (or the stream URL's query); the call is then admitted with
``SessionHub.open`` like any stream, so placement, pinning and resume apply: a stream that reconnects
with the same parameters resumes its conversation.

Agent audio goes out one 20 ms frame per playout tick, with a mark every ``markIntervalMs``; the
carrier's acknowledgements say what was played. At a barge-in the session calls ``on_interrupt`` at
the decision: ``clear`` is queued ahead of everything unsent, and the frames beyond the last
acknowledged mark no longer count as played (the turn's history keeps what the caller heard).

Bad input never ends the call: before start it closes the stream with a close code and reason (no call
exists yet); after start each refused message gets an error event and the call goes on, up to
``maxBadMessages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel

from ..audio.pcm import BYTES_PER_SAMPLE, InvalidAudio
from ..config import TelephonySpec
from ..pipeline.events import SessionEvent
from ..pipeline.input_limits import InputRefused
from ..sessions.directory import AdmissionError
from ..transports import transport_metrics
from ..transports.audio_budget import AudioBudget, Verdict
from ..transports.hub import LiveSession, SessionHub
from .carriers import (
    BadInput,
    Carrier,
    CarrierCodec,
    Dtmf,
    MarkPlayed,
    MediaIn,
    StreamStart,
    StreamStopped,
    codec_for,
)
from .marks import MarkLedger

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024
# WebSocket close codes (RFC 6455): the carrier logs the code and reason.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003  # a media format the pod does not take
CLOSE_POLICY = 1008  # a protocol violation, or a stream the pod may not admit
CLOSE_TRY_AGAIN = 1013  # no room, draining, the store down: the carrier may retry
# Agent audio queued for a carrier that does not read (TCP backpressure): beyond this (2 s of frames and
# their marks) the oldest are dropped rather than piling up in memory.
MAX_QUEUED_AUDIO = 120


class ErrorBody(BaseModel):
    code: str
    message: str


class StreamError(BaseModel):
    """Sent to the carrier for each refused message; the call goes on."""

    event: Literal["error"] = "error"
    error: ErrorBody


class _Clear:
    """The clear in the outbound queue; ``decided`` is when the barge-in was decided."""

    __slots__ = ("decided",)

    def __init__(self, decided: float) -> None:
        self.decided = decided


class CarrierStream:
    """One carrier WebSocket; the session's Sink once admitted."""

    def __init__(
        self,
        hub: SessionHub,
        spec: TelephonySpec,
        codec: CarrierCodec,
        ws: web.WebSocketResponse,
        query: dict[str, str],
    ) -> None:
        self.hub = hub
        self.spec = spec
        self.codec = codec
        self.ws = ws
        self.query = query
        self.carrier: Carrier = codec.name
        self.ledger = MarkLedger(spec.mark_interval_ms // 20)
        self.live: LiveSession | None = None
        self.rate = 0
        self.bad_messages = 0
        self.clear_seconds: list[float] = []  # barge-in decision -> clear written, per barge-in
        self._audio: deque[str | bytes] = deque()  # media and marks, dropped at a clear
        self._control: deque[str | _Clear] = deque()  # clears and error events, sent first
        self._wake = asyncio.Event()
        self._hangup: tuple[int, str] | None = None
        self._closed = False

    # ------------------------------------------------------------------ the stream

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop(), name=f"{self.carrier}-writer")
        try:
            start = await self._await_start()
            if start is not None and await self._admit(start):
                await self._read_loop()
        finally:
            if self.live is not None and not self.live.finished.is_set():
                # The carrier went away without a stop: the session stays resumable for its reconnect.
                await self.live.close("disconnected")
            self._closed = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 1.0)
            if not self.ws.closed:
                code, reason = self._hangup or (CLOSE_NORMAL, "call ended")
                await self.ws.close(code=code, message=reason.encode()[:123])

    async def _await_start(self) -> StreamStart | None:
        deadline = time.monotonic() + self.spec.start_timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                msg = await self.ws.receive(timeout=remaining)
            except TimeoutError:
                self._count("no_start")
                await self._close(
                    CLOSE_POLICY, f"no start event within {self.spec.start_timeout_seconds:g} s"
                )
                return None
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None  # closed before the call started
            try:
                event = self.codec.parse(msg.data)
            except BadInput as exc:
                self._count(exc.reason)
                code = CLOSE_UNSUPPORTED if exc.reason == "wrong_codec" else CLOSE_POLICY
                await self._close(code, str(exc))
                return None
            if isinstance(event, StreamStart):
                return event
            if isinstance(event, MediaIn | Dtmf | MarkPlayed):
                self._count("before_start")  # nothing to feed yet; the start may still come

    async def _admit(self, start: StreamStart) -> bool:
        params = {**self.query, **start.parameters}
        session_id, token = params.get("sessionId", ""), params.get("resumeToken", "")
        if not session_id or not token:
            self._count("no_session")
            await self._close(
                CLOSE_POLICY,
                "the stream carries no sessionId and resumeToken: answer the call with the webhook",
            )
            return False
        self.rate = start.sample_rate
        try:
            self.live = await self.hub.open(
                transport=self.carrier,
                session_id=session_id,
                resume_token=token,
                output_sample_rate=start.sample_rate,
                sink=self,
            )
        except AdmissionError as exc:
            retry = exc.code in {"unavailable", "resource_exhausted"}
            await self._close(CLOSE_TRY_AGAIN if retry else CLOSE_POLICY, f"{exc.code}: {exc}")
            return False
        self.live.session.on_interrupt = self._barge_in
        self.live.session.unconfirmed_frames = lambda: self.ledger.unacknowledged
        log.info(
            "carrier stream started",
            extra={"session_id": self.live.id, "carrier": self.carrier, "resumed": self.live.resumed},
        )
        return True

    async def _read_loop(self) -> None:
        assert self.live is not None
        session = self.live.session
        # Caller audio at real time plus a burst, as every transport takes it (transports/audio_budget.py).
        budget = AudioBudget(session.config.session.limits.audio_burst_seconds, time.monotonic())
        async for msg in self.ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                event = self.codec.parse(msg.data)
                match event:
                    case MediaIn(pcm=pcm):
                        verdict = budget.take(len(pcm) / (BYTES_PER_SAMPLE * self.rate), time.monotonic())
                        if verdict is Verdict.TAKE:
                            session.push_audio(pcm, self.rate)
                        elif self._over_budget(verdict, budget):
                            await self.live.close("input_flood")
                            return
                    case MarkPlayed(name=name):
                        self.ledger.acknowledged(name)
                    case Dtmf(digit=digit):
                        session.push_dtmf(digit)
                    case StreamStart():
                        raise BadInput("duplicate_start", "the stream already started")
                    case StreamStopped():
                        await self.live.end_by_caller()
                        return
            except BadInput as exc:
                self._refuse(exc.reason, str(exc))
            except InvalidAudio as exc:
                self._refuse("invalid_audio", str(exc))
            except InputRefused as exc:
                self._refuse(exc.reason, str(exc))
            if self.bad_messages > self.spec.max_bad_messages:
                self._hangup = (CLOSE_POLICY, f"more than {self.spec.max_bad_messages} refused messages")
                await self.live.close("bad_input")
                return
            if self.live.finished.is_set():
                return
        if self.codec.hangs_up_by_close and self.ws.close_code == CLOSE_NORMAL:
            await self.live.end_by_caller()  # Vonage has no stop event: its hangup closes cleanly

    def _over_budget(self, verdict: Verdict, budget: AudioBudget) -> bool:
        """Audio faster than real time is dropped, refused once per episode (not a bad message each
        frame: a carrier's burst must not hang up the call); True for a flood: the call is to end."""
        self._count("audio_rate")
        if verdict is Verdict.FLOOD:
            log.warning(
                "carrier floods audio: call ended",
                extra={"carrier": self.carrier, "ahead_seconds": round(budget.ahead_seconds, 1)},
            )
            self._hangup = (CLOSE_POLICY, f"audio flood: {budget.ahead_seconds:.0f} s ahead of real time")
            return True
        if verdict is Verdict.REFUSE_FIRST:
            self._send_error(
                "audio_rate",
                f"audio faster than real time (more than {budget.burst_seconds:g} s "
                "ahead): dropped until it slows down",
            )
        return False

    def _refuse(self, reason: str, message: str) -> None:
        self.bad_messages += 1
        self._count(reason)
        log.warning(
            "carrier message refused",
            extra={"carrier": self.carrier, "reason": reason, "detail": message[:200]},
        )
        self._send_error(reason, message)

    def _send_error(self, code: str, message: str) -> None:
        if not self._closed:
            self._control.append(StreamError(error=ErrorBody(code=code, message=message)).model_dump_json())
            self._wake.set()

    def _count(self, reason: str) -> None:
        transport_metrics.BAD_INPUT_TOTAL.labels(self.carrier, reason).inc()

    async def _close(self, code: int, reason: str) -> None:
        log.info("carrier stream refused", extra={"carrier": self.carrier, "code": code, "reason": reason})
        self._hangup = (code, reason)
        await self.ws.close(code=code, message=reason.encode()[:123])

    # ------------------------------------------------------------------ the Sink

    def on_audio(self, frame: bytes | None) -> None:
        if frame is None:
            name = self.ledger.silence()
            if name is not None:
                self._send(self.codec.mark(name))
            return
        self._send(self.codec.media(frame))
        name = self.ledger.frame()
        if name is not None:
            self._send(self.codec.mark(name))

    def on_event(self, event: SessionEvent) -> None:
        pass  # carriers carry audio only; transcripts and metrics are in the logs and metrics

    def on_end(self, reason: str) -> None:
        if self._hangup is None:
            self._hangup = (CLOSE_NORMAL, f"call ended: {reason}")
        self._closed = True
        self._wake.set()

    def _barge_in(self) -> int:
        """The session decided the caller interrupts: clear the carrier's buffer ahead of anything unsent;
        returns the frames the caller did not hear."""
        decided = time.perf_counter()
        self._audio.clear()
        self._control.appendleft(_Clear(decided))
        self._wake.set()
        return self.ledger.clear()

    def _send(self, item: str | bytes) -> None:
        if self._closed:
            return
        if len(self._audio) >= MAX_QUEUED_AUDIO:
            self._audio.popleft()
            transport_metrics.DROPPED_FRAMES_TOTAL.labels(self.carrier).inc()
        self._audio.append(item)
        self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._control or self._audio:
                    item = self._control.popleft() if self._control else self._audio.popleft()
                    if isinstance(item, _Clear):
                        await self.ws.send_str(self.codec.clear())
                        seconds = time.perf_counter() - item.decided
                        self.clear_seconds.append(seconds)
                        transport_metrics.TELEPHONY_CLEAR_SECONDS.labels(self.carrier).observe(seconds)
                    elif isinstance(item, bytes):
                        await self.ws.send_bytes(item)
                    else:
                        await self.ws.send_str(item)
                if self._closed:
                    if self._hangup is not None and self.live is not None and not self.ws.closed:
                        code, reason = self._hangup
                        await self.ws.close(code=code, message=reason.encode()[:123])
                    return
        except (ConnectionResetError, RuntimeError):
            if self.live is not None:
                self.live.request_close("disconnected")


class MediaStreams:
    """The pod's carrier WebSockets: GET /v1/telephony/{carrier}/stream."""

    def __init__(self, hub: SessionHub, spec: TelephonySpec) -> None:
        self.hub = hub
        self.spec = spec
        self.streams: set[CarrierStream] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/telephony/{carrier}/stream", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        carrier = request.match_info["carrier"]
        if carrier not in self.spec.carriers:
            return web.json_response(
                {"error": {"code": "not_found", "message": f"carrier {carrier[:40]!r} is not enabled"}},
                status=404,
            )
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        stream = CarrierStream(self.hub, self.spec, codec_for(carrier), ws, dict(request.query))
        self.streams.add(stream)
        try:
            await stream.run()
        finally:
            self.streams.discard(stream)
        return ws
