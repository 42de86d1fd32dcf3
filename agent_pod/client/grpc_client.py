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

from .audio import FRAME_MS, frames
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
}


class GrpcCaller:
    """``async with GrpcCaller(target) as call:`` opens the stream and waits for SessionStarted."""

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
    ) -> None:
        self.target = target
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

    async def __aenter__(self) -> GrpcCaller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, within: float = 30.0) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        stub = agent_pb2_grpc.VoiceAgentStub(self._channel)
        start = agent_pb2.StartSession(
            session_id=self.session_id,
            resume_token=self.resume_token,
            input_format=agent_pb2.AudioFormat(sample_rate_hz=self.sample_rate, channels=1),
            output_format=agent_pb2.AudioFormat(sample_rate_hz=self.output_sample_rate, channels=1),
        )
        self._outgoing.put_nowait(agent_pb2.ClientEvent(start=start))
        self._call = stub.Converse(self._requests())
        self._reader = asyncio.get_running_loop().create_task(self._read())
        summary = await self.recorder.wait(lambda s: bool(s.session_id) or s.ended is not None, within)
        if not summary.session_id:
            raise ConnectionError(f"stream refused: {self.status} {self.details}")
        self.session_id = summary.session_id

    async def _requests(self) -> Any:
        while True:
            message = await self._outgoing.get()
            if message is None:
                return
            yield message

    async def _read(self) -> None:
        recorder = self.recorder
        try:
            async for message in self._call:
                kind = message.WhichOneof("event")
                if kind == "audio":
                    recorder.audio(message.audio.pcm)
                elif kind is not None:
                    body = getattr(message, kind)
                    fields = MessageToDict(
                        body, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                    )
                    recorder.event(EVENT_TYPES.get(kind, kind), fields)
        except grpc.aio.AioRpcError as exc:
            self.status, self.details = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            if not self._call.cancelled():
                raise
            self.status = grpc.StatusCode.CANCELLED
        else:
            self.status = grpc.StatusCode.OK
        if recorder.summary.ended is None:
            recorder.event(
                "session_ended", {"reason": f"stream closed: {self.status.name if self.status else ''}"}
            )

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
        self._outgoing.put_nowait(agent_pb2.ClientEvent(end=agent_pb2.EndSession(reason=reason)))

    async def close(self) -> None:
        self._outgoing.put_nowait(None)
        if self._reader is not None:
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._reader)
            except TimeoutError:
                self._call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        if self._own_channel and self._channel is not None:
            await self._channel.close()


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
