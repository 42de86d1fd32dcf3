"""Caller over gRPC: one VoiceAgent/Converse stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from voicefleet.v1 import agent_pb2, agent_pb2_grpc

from .caller_audio import FRAME_MS, frames
from .record import CallRecorder

# oneof name in ServerEvent -> the event type used by the data channel and the pipeline.
EVENT_TYPES = {
    "started": "session_started",
    "transcript": "user_transcript",
    "agent_text": "agent_text",
    "interruption": "interruption",
    "tool": "tool",
    "metrics": "turn_metrics",
    "error": "error",
    "ended": "session_ended",
    "migrate": "migration_offer",
    "migrated": "migration_completed",
}


class GrpcCaller:
    """``async with GrpcCaller(target) as call:`` opens the stream and waits for SessionStarted.

    The caller tells the pod it follows migrations (``follow_migrations``), and follows each
    MigrationOffer as it comes (``auto_follow``; else through ``follow``): it opens the call on
    the new pod with the offer's token while it keeps talking on the old stream, then switches its
    audio over and tells the old pod it followed. The recorder sees one call throughout.
    """

    def __init__(
        self,
        target: str,
        *,
        sample_rate: int = 16000,
        output_sample_rate: int | None = None,
        session_id: str = "",
        resume_token: str = "",
        recorder: CallRecorder | None = None,
        channel: grpc.aio.Channel | None = None,
        follow_migrations: bool = True,
        auto_follow: bool = True,
        api_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.metadata = dict(metadata or {})  # StartSession.metadata of a new session
        self.api_key = api_key  # API key or JWT: what a new session (no session_id) needs
        self.sample_rate = sample_rate
        self.output_sample_rate = output_sample_rate or sample_rate
        self.session_id = session_id
        self.resume_token = resume_token
        self.recorder = recorder or CallRecorder()
        self._own_channel = channel is None
        self._channel = channel
        self._outgoing: asyncio.Queue[agent_pb2.ClientEvent | None] = asyncio.Queue()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._sequence = 0
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self.follow_migrations = follow_migrations  # told to the pod: this caller follows moves
        self.auto_follow = auto_follow  # follow offers as they come (else the owner calls follow())
        self.pods: list[str] = []  # the pods that served this call, in order
        self._retired: list[tuple[grpc.aio.Channel | None, asyncio.Task[None] | None]] = []
        self._following: asyncio.Task[None] | None = None

    async def __aenter__(self) -> GrpcCaller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _start_message(self, migration_token: str = "") -> agent_pb2.ClientEvent:
        start = agent_pb2.StartSession(
            session_id=self.session_id,
            resume_token="" if migration_token else self.resume_token,
            migration_token=migration_token,
            accepts_migration=self.follow_migrations,
            metadata=self.metadata,
            input_format=agent_pb2.AudioFormat(sample_rate_hz=self.sample_rate, channels=1),
            output_format=agent_pb2.AudioFormat(sample_rate_hz=self.output_sample_rate, channels=1),
        )
        return agent_pb2.ClientEvent(start=start)

    async def open(self, within: float = 30.0) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        stub = agent_pb2_grpc.VoiceAgentStub(self._channel)
        self._outgoing.put_nowait(self._start_message())
        metadata = (
            (("authorization", f"Bearer {self.api_key}"),) if self.api_key and not self.session_id else None
        )
        self._call = stub.Converse(_requests(self._outgoing), metadata=metadata)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._call))
        summary = await self.recorder.wait(lambda s: bool(s.session_id) or s.ended is not None, within)
        if not summary.session_id:
            raise ConnectionError(f"stream refused: {self.status} {self.details}")
        self.session_id = summary.session_id

    def _record(self, kind: str, body: Any) -> None:
        fields = MessageToDict(
            body, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        if kind == "started":
            self.pods.append(body.pod)
        self.recorder.event(EVENT_TYPES.get(kind, kind), fields)

    async def _read(self, call: Any) -> None:
        recorder = self.recorder
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                kind = message.WhichOneof("event")
                if kind == "audio":
                    recorder.audio(message.audio.pcm)
                    continue
                if kind is None:
                    continue
                body = getattr(message, kind)
                if kind == "ended" and body.reason == "migrated":
                    return  # this pod handed the call over; the new stream goes on
                self._record(kind, body)
                if kind == "migrate" and self.auto_follow and self._following is None:
                    self._following = asyncio.get_running_loop().create_task(self.follow(body))
        except grpc.aio.AioRpcError as exc:
            status, self.details = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            if not call.cancelled():
                raise
            status = grpc.StatusCode.CANCELLED
        else:
            status = grpc.StatusCode.OK
        if call is not self._call:
            return  # a stream the call has moved away from
        self.status = status
        if recorder.summary.ended is None:
            recorder.event(
                "session_ended", {"reason": f"stream closed: {self.status.name if self.status else ''}"}
            )

    async def follow(self, offer: agent_pb2.MigrationOffer) -> None:
        """Open the call on the pod of ``offer``; switch to it once it has started, else stay here."""
        old_outgoing = self._outgoing
        channel = grpc.aio.insecure_channel(offer.grpc_address)
        outgoing: asyncio.Queue[agent_pb2.ClientEvent | None] = asyncio.Queue()
        outgoing.put_nowait(self._start_message(offer.migration_token))
        call = agent_pb2_grpc.VoiceAgentStub(channel).Converse(_requests(outgoing))
        error = ""
        try:
            async with asyncio.timeout(max(0.5, offer.follow_within_ms / 1000 - 0.5)):
                first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("event") != "started":
                error = "the new pod did not start the call"
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            error = f"the new pod could not be reached: {exc}"
        if error:
            call.cancel()
            await channel.close()
            result = agent_pb2.MigrationResult(followed=False, error=error)
            old_outgoing.put_nowait(agent_pb2.ClientEvent(migration=result))
            self._following = None
            return
        # From here audio and text go to the new pod; the old one hands over what it held meanwhile.
        self._outgoing, self._call = outgoing, call
        old_outgoing.put_nowait(agent_pb2.ClientEvent(migration=agent_pb2.MigrationResult(followed=True)))
        old_outgoing.put_nowait(None)
        self._retired.append((self._channel if self._own_channel else None, self._reader))
        self._channel, self._own_channel = channel, True
        self._record("started", first.started)
        self._reader = asyncio.get_running_loop().create_task(self._read(call))
        self._following = None

    def send_audio(self, pcm: bytes) -> None:
        self._sequence += 1
        self._outgoing.put_nowait(
            agent_pb2.ClientEvent(audio=agent_pb2.AudioChunk(pcm=pcm, sequence=self._sequence))
        )

    def send_raw(self, message: agent_pb2.ClientEvent) -> None:
        self._outgoing.put_nowait(message)

    def send_text(self, text: str) -> None:
        self._outgoing.put_nowait(agent_pb2.ClientEvent(text=agent_pb2.TextInput(text=text)))

    async def play(self, pcm: bytes, speech_ends: list[int] | None = None) -> None:
        """Stream ``pcm`` in real time (20 ms chunks on absolute deadlines), marking speech ends."""
        await play_realtime(self.send_audio, self.recorder, pcm, self.sample_rate, speech_ends)

    def drop(self) -> None:
        """Lose the connection abruptly (no EndSession), as a network failure would."""
        self._call.cancel()

    async def end(self, reason: str = "caller hung up") -> None:
        if self._following is not None:  # end the call where it goes on, not on the pod it leaves
            with contextlib.suppress(Exception):
                await self._following
        self._outgoing.put_nowait(agent_pb2.ClientEvent(end=agent_pb2.EndSession(reason=reason)))

    async def close(self) -> None:
        if self._following is not None:
            with contextlib.suppress(Exception):
                await self._following
        self._outgoing.put_nowait(None)
        if self._reader is not None:
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._reader)
            except TimeoutError:
                self._call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        for channel, reader in self._retired:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if channel is not None:
                await channel.close()
        if self._own_channel and self._channel is not None:
            await self._channel.close()


async def _requests(outgoing: asyncio.Queue[agent_pb2.ClientEvent | None]) -> Any:
    while True:
        message = await outgoing.get()
        if message is None:
            return
        yield message


async def play_realtime(
    send: Callable[[bytes], None],
    recorder: CallRecorder,
    pcm: bytes,
    sample_rate: int,
    speech_ends: list[int] | None = None,
) -> None:
    """Send ``pcm`` in 20 ms frames, each when its capture would end (as a microphone does).

    ``speech_ends`` are frame indices where speech stops: the end is marked when the frame before goes out."""
    await pace(send, recorder, frames(pcm, sample_rate), speech_ends)


async def pace(
    send: Callable[[bytes], None],
    recorder: CallRecorder,
    items: list[bytes],
    speech_ends: list[int] | None = None,
) -> None:
    """Send one item (a 20 ms frame or packet) every 20 ms on absolute deadlines, marking speech ends."""
    ends = set(speech_ends or ())
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + (i + 1) * FRAME_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        send(item)
        if i + 1 in ends:
            recorder.mark_speech_end(i + 1)
