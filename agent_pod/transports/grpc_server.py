"""The gRPC transport: voicefleet.v1.VoiceAgent/Converse, plus health checking and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from voicefleet.v1 import agent_pb2, agent_pb2_grpc

from ..audio.pcm import BYTES_PER_SAMPLE, InvalidAudio
from ..pipeline.events import SessionEvent
from ..pipeline.input_limits import InputRefused
from ..sessions.api import check_metadata, grpc_bearer
from ..sessions.directory import AdmissionError
from ..sessions.refusals import grpc_refusal
from . import transport_metrics
from .audio_budget import AudioBudget, Verdict
from .audio_format import check_format
from .hub import LiveSession, SessionHub
from .wire import event_to_proto

log = logging.getLogger(__name__)

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["VoiceAgent"].full_name
# The largest valid message is an audio chunk of 1 s at 48 kHz (96,000 bytes) or a text of
# spec.session.limits.maxTextChars (at most 16,384 characters, 64 KiB of UTF-8); anything larger is
# refused by gRPC itself (RESOURCE_EXHAUSTED) before it is read into memory.
MAX_MESSAGE_BYTES = 128 * 1024
FIRST_MESSAGE_TIMEOUT_SECONDS = 10.0

Error = agent_pb2.Error


class GrpcSink:
    """Outgoing messages of one stream. Events are never dropped; agent audio is held in a bounded
    queue that drops the oldest frame (counted) when the caller does not read, and the caller is
    given up on when a single write stays blocked for ``slow_reader_seconds`` while frames drop."""

    def __init__(
        self, *, max_audio_frames: int = 50, max_events: int = 1000, slow_reader_seconds: float = 5.0
    ) -> None:
        self._events: deque[agent_pb2.ServerEvent] = deque()
        self._audio: deque[tuple[bytes, float]] = deque()  # (frame, when it was handed over)
        self._max_audio = max_audio_frames
        self._max_events = max_events
        self._slow_reader_seconds = slow_reader_seconds
        self._wake = asyncio.Event()
        self._write_started: float | None = None
        self._sequence = 0
        self.dropped_frames = 0
        self.ended: str | None = None
        self.gave_up = asyncio.Event()
        self.failure: str | None = None
        self.failure_code = grpc.StatusCode.INVALID_ARGUMENT

    def on_audio(self, frame: bytes | None) -> None:
        if frame is None:
            return
        audio = self._audio
        if len(audio) >= self._max_audio:
            audio.popleft()
            self.dropped_frames += 1
            transport_metrics.DROPPED_FRAMES_TOTAL.labels("grpc").inc()
            self._check_stalled()
        audio.append((frame, time.monotonic()))
        self._wake.set()

    def on_event(self, event: SessionEvent) -> None:
        self.send(event_to_proto(event))

    def send(self, message: agent_pb2.ServerEvent) -> None:
        if len(self._events) >= self._max_events:
            self.gave_up.set()
            return
        self._events.append(message)
        self._wake.set()

    def error(self, code: int, message: str, fatal: bool = False) -> None:
        self.send(agent_pb2.ServerEvent(error=Error(code=code, message=message, fatal=fatal)))

    def on_end(self, reason: str) -> None:
        self.ended = reason
        self._wake.set()

    def _check_stalled(self) -> None:
        started = self._write_started
        if started is not None and time.monotonic() - started > self._slow_reader_seconds:
            self.gave_up.set()

    async def write_all(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Write until the session has ended and everything queued is sent."""
        events, audio = self._events, self._audio
        observe = transport_metrics.SEND_DELAY_SECONDS.labels("grpc").observe
        while True:
            handed: float | None = None
            if events:
                message = events.popleft()
            elif audio:
                self._sequence += 1
                pcm, handed = audio.popleft()
                message = agent_pb2.ServerEvent(audio=agent_pb2.AudioChunk(pcm=pcm, sequence=self._sequence))
            elif self.ended is not None:
                return
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._write_started = time.monotonic()
            await context.write(message)
            self._write_started = None
            if handed is not None:
                observe(time.monotonic() - handed)


class VoiceAgentService(agent_pb2_grpc.VoiceAgentServicer):
    def __init__(self, hub: SessionHub, pod_name: str, slow_reader_seconds: float = 5.0) -> None:
        self.hub = hub
        self.pod_name = pod_name
        self.slow_reader_seconds = slow_reader_seconds

    async def Converse(
        self,
        request_iterator: AsyncIterator[agent_pb2.ClientEvent],
        context: grpc.aio.ServicerContext[agent_pb2.ClientEvent, agent_pb2.ServerEvent],
    ) -> None:
        requests = aiter(request_iterator)
        start = await _first_message(requests, context)
        input_rate = start.input_format.sample_rate_hz
        output_format = start.output_format if start.HasField("output_format") else start.input_format
        for name, fmt in (("input_format", start.input_format), ("output_format", output_format)):
            problem = check_format(fmt.sample_rate_hz, fmt.channels)
            if problem:
                transport_metrics.BAD_INPUT_TOTAL.labels("grpc", "audio_format").inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"StartSession.{name}: {problem}")
        sink = GrpcSink(slow_reader_seconds=self.slow_reader_seconds)
        try:
            # An unplaced session's metadata (routing, tenant, CRM ids) comes with its first message; a
            # placed one has CreateSession's
            metadata = dict(start.metadata) if not start.session_id and not start.migration_token else {}
            check_metadata(metadata)
            live = await self.hub.open(
                transport="grpc",
                session_id=start.session_id,
                resume_token=start.resume_token,
                output_sample_rate=output_format.sample_rate_hz,
                sink=sink,
                migration_token=start.migration_token,
                accepts_migration=start.accepts_migration,
                credential=grpc_bearer(context),
                metadata=metadata,
            )
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
        # Queued before anything awaits, so SessionStarted precedes every event of the session.
        sink.send(
            agent_pb2.ServerEvent(
                started=agent_pb2.SessionStarted(
                    session_id=live.id,
                    pod=self.pod_name,
                    prompt_version=live.session.prompt_id,
                    output_format=agent_pb2.AudioFormat(
                        sample_rate_hz=output_format.sample_rate_hz, channels=1
                    ),
                    resumed=live.resumed,
                    restored_turns=live.restored_turns,
                    # A brand-new session: the caller needs its token to resume after a disconnect.
                    resume_token=live.resume_token or "",
                    migrated=live.moved_from is not None,
                )
            )
        )
        await context.send_initial_metadata(
            (("voicefleet-session-id", live.id), ("voicefleet-pod", self.pod_name))
        )
        reader = asyncio.get_running_loop().create_task(_read(requests, live, sink, input_rate))
        writer = asyncio.get_running_loop().create_task(sink.write_all(context))
        gave_up = asyncio.get_running_loop().create_task(sink.gave_up.wait())
        try:
            await asyncio.wait({writer, gave_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer, gave_up):
                task.cancel()
            if not live.finished.is_set():
                live.request_close("slow_reader" if sink.gave_up.is_set() else "disconnected")
        if sink.gave_up.is_set():
            log.warning(
                "caller stopped reading", extra={"session_id": live.id, "dropped_frames": sink.dropped_frames}
            )
            # A write is still stuck in the transport, so no status can be sent: the stream is just dropped.
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(
                f"the caller stopped reading for {self.slow_reader_seconds:g} s: session ended"
            )
            return
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        if sink.failure is not None:
            await context.abort(sink.failure_code, sink.failure)


async def _first_message(
    requests: AsyncIterator[agent_pb2.ClientEvent], context: grpc.aio.ServicerContext[Any, Any]
) -> agent_pb2.StartSession:
    try:
        async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT_SECONDS):
            first = await anext(requests)
    except StopAsyncIteration:
        first = None
    except TimeoutError:
        transport_metrics.BAD_INPUT_TOTAL.labels("grpc", "no_start").inc()
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the first message must be StartSession (none came within {FIRST_MESSAGE_TIMEOUT_SECONDS:g} s)",
        )
    if first is None or first.WhichOneof("event") != "start":
        transport_metrics.BAD_INPUT_TOTAL.labels("grpc", "no_start").inc()
        got = "end of stream" if first is None else (first.WhichOneof("event") or "an unknown message")
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"the first message must be StartSession, got {got}"
        )
    if not first.start.HasField("input_format"):
        transport_metrics.BAD_INPUT_TOTAL.labels("grpc", "audio_format").inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "StartSession.input_format is required")
    return first.start


async def _read(
    requests: AsyncIterator[agent_pb2.ClientEvent],
    live: LiveSession,
    sink: GrpcSink,
    input_rate: int,
) -> None:
    session = live.session
    budget = AudioBudget(session.config.session.limits.audio_burst_seconds, time.monotonic())
    try:
        async for message in requests:
            kind = message.WhichOneof("event")
            if kind == "audio":
                chunk = message.audio
                verdict = budget.take(len(chunk.pcm) / (BYTES_PER_SAMPLE * input_rate), time.monotonic())
                if verdict is not Verdict.TAKE:
                    if _over_budget(sink, live, verdict, budget):
                        return
                    continue
                try:
                    session.push_audio(chunk.pcm, input_rate)
                except InvalidAudio as exc:
                    _refuse(sink, "audio", f"audio chunk {chunk.sequence}: {exc}")
            elif kind == "text":
                if message.text.text.strip():
                    try:
                        session.push_text(message.text.text)
                    except InputRefused as exc:
                        _refuse(sink, exc.reason, str(exc), Error.Code.Value(exc.code))
                else:
                    _refuse(sink, "text", "empty text input")
            elif kind == "end":
                if await live.end_by_caller():
                    return
                # held during a handover: the caller's answer to the MigrationOffer is still to come
            elif kind == "migration":
                if not live.report_migration(message.migration.followed):
                    _refuse(sink, "migration", "MigrationResult without a MigrationOffer: ignored")
            elif kind == "start":
                _refuse(sink, "duplicate_start", "StartSession is only valid as the first message: ignored")
            else:
                _refuse(sink, "unknown_message", "unknown client event (newer protocol?): ignored")
    except asyncio.CancelledError:
        raise
    except DecodeError as exc:
        # The stream cannot be read past a message that is not a ClientEvent: end this call only.
        _refuse(sink, "undecodable", f"could not decode a ClientEvent: {exc}")
        sink.failure = f"could not decode a ClientEvent: {exc}"
        live.request_close("invalid_message")
    except Exception as exc:
        # gRPC gave up on the stream (an oversized message, a reset): only this session ends, resumable.
        log.info("caller stream failed: %s", exc, extra={"session_id": live.id})
        live.request_close("disconnected")
    # The caller half-closed: it says nothing more but may still listen; the session goes on until
    # EndSession, a cancelled stream (handled by Converse) or the idle timeout.


def _refuse(sink: GrpcSink, reason: str, message: str, code: int = Error.INVALID_ARGUMENT) -> None:
    transport_metrics.BAD_INPUT_TOTAL.labels("grpc", reason).inc()
    sink.error(code, message)


def _over_budget(sink: GrpcSink, live: LiveSession, verdict: Verdict, budget: AudioBudget) -> bool:
    """Audio faster than real time is dropped, reported once per episode; a flood ends the call (True)."""
    transport_metrics.BAD_INPUT_TOTAL.labels("grpc", "audio_rate").inc()
    if verdict is Verdict.REFUSE_FIRST:
        sink.error(
            Error.RESOURCE_EXHAUSTED,
            f"audio arrives faster than real time (more than {budget.burst_seconds:g} s ahead): "
            "dropped until it slows down",
        )
    elif verdict is Verdict.FLOOD:
        log.warning(
            "caller floods audio: call ended",
            extra={"session_id": live.id, "ahead_seconds": round(budget.ahead_seconds, 1)},
        )
        sink.failure = f"audio flood: {budget.ahead_seconds:.0f} s ahead of real time: call ended"
        sink.failure_code = grpc.StatusCode.RESOURCE_EXHAUSTED
        live.request_close("input_flood")
        return True
    return False


class GrpcServer:
    """The pod's gRPC server: VoiceAgent, health, reflection and any extra services."""

    def __init__(
        self,
        hub: SessionHub,
        *,
        pod_name: str,
        extra_services: list[tuple[str, Callable[[grpc.aio.Server], None]]] | None = None,
        slow_reader_seconds: float = 5.0,
    ) -> None:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Pings find callers that vanished without closing their connection.
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ]
        )
        agent_pb2_grpc.add_VoiceAgentServicer_to_server(
            VoiceAgentService(hub, pod_name, slow_reader_seconds), self.server
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        for name, add in extra_services or []:
            add(self.server)
            names.append(name)
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self.server)
        self.service_names = names
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"gRPC could not bind {host}:{port}")
        await self.server.start()
        await self.set_serving(True)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.server.stop(grace)
