"""A small fake PBX speaking Asterisk AudioSocket: it names a call, streams speech as slin 8 kHz in
real-time 20 ms frames, sends keypad digits, and records every frame the pod sends back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from agent_pod.telephony import audiosocket_wire as wire
from tests.support.audio import espeak_utterance, frames, silence

T = TypeVar("T")
RATE = wire.SAMPLE_RATE


def speech(text: str) -> bytes:
    """``text`` spoken by espeak-ng as the PBX sends it: slin, 8 kHz mono."""
    return espeak_utterance(text, rate=RATE)


class FakePbx:
    def __init__(self, host: str, port: int, call: uuid.UUID | None = None) -> None:
        self.host, self.port = host, port
        self.call = call or uuid.uuid4()
        self.received: list[tuple[float, wire.Frame]] = []  # (monotonic arrival, frame)
        self.closed = asyncio.Event()  # the pod closed the connection
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, name_call: bool = True) -> FakePbx:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.get_running_loop().create_task(self._read())
        if name_call:
            self.send(wire.uuid_frame(self.call))
        return self

    async def __aenter__(self) -> FakePbx:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.drop()

    def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def stream(self, pcm: bytes, then_silence_ms: int = 600) -> None:
        """``pcm`` then silence in 20 ms frames, each sent at its real-time deadline."""
        start = time.monotonic()
        for i, frame in enumerate(frames(pcm + silence(then_silence_ms, RATE), RATE)):
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.closed.is_set():
                return
            self.send(wire.audio(frame))

    def dtmf(self, digits: str) -> None:
        for digit in digits:
            self.send(wire.dtmf(digit))

    async def hang_up(self) -> None:
        self.send(wire.hangup())
        await self.wait(lambda: self.closed.is_set(), 10, "the pod to close the call")

    async def drop(self) -> None:
        """Close the socket without a hangup frame (a PBX or network that fails)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        assert self._reader is not None
        parser = wire.FrameParser()
        try:
            while data := await self._reader.read(4096):
                now = time.monotonic()
                for item in parser.feed(data):
                    assert isinstance(item, wire.Frame), item
                    self.received.append((now, item))
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    # ----- what came back

    def of_kind(self, kind: int) -> list[wire.Frame]:
        return [f for _, f in self.received if f.kind == kind]

    @property
    def audio_frames(self) -> int:
        return len(self.of_kind(wire.Kind.AUDIO))

    @property
    def error_codes(self) -> list[int]:
        return [f.payload[0] for f in self.of_kind(wire.Kind.ERROR) if f.payload]

    @property
    def hung_up(self) -> bool:
        return bool(self.of_kind(wire.Kind.HANGUP))

    async def wait(self, condition: Callable[[], T], within: float = 20.0, what: str = "") -> T:
        deadline = time.monotonic() + within
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise AssertionError(f"fake PBX: timed out after {within}s waiting for {what or condition}")
            await asyncio.sleep(0.01)
        return value

    async def quiet_answer(self, since: int, within: float = 20.0, gap_s: float = 0.3) -> int:
        """Wait until an answer has come after frame ``since`` and ended (no frame for ``gap_s``); the
        number of frames it had."""
        await self.wait(lambda: self.audio_frames > since, within, "agent audio")
        await self.wait(
            lambda: time.monotonic() - self.received[-1][0] > gap_s, within, "the agent's answer to end"
        )
        return self.audio_frames - since
