"""Asterisk AudioSocket over TCP: a PBX streams a call's audio (slin, 8 kHz, 20 ms frames) to the pod.

The first frame names the call (a UUID); that UUID is the call's key. A UUID the pod does not know
starts a new session through the session hub, admitted like any new stream (with the configured
credential when auth requires one; ``newCalls: false`` refuses unknown UUIDs). The pod remembers
UUID -> (session id, resume token) for the resume window, so a TCP connection that drops and comes
back with the same UUID resumes the conversation; a connection for a UUID that is still live here
takes the call over from the old one. AudioSocket carries no tokens, so the port must only be
reachable by the PBX (the UUID, 122 random bits, is what names a call).

Agent audio goes out as one 320-byte frame per playout tick while the agent speaks and nothing while
it is silent (Asterisk plays what it gets). There is no "clear": frames are paced in real time, so a
barge-in stops the audio at the next tick and what was sent is what the caller heard. Keypad digits go
to the session's DTMF collector. Bad input is counted in voicefleet_transport_bad_input_total
{transport="audiosocket"}: a bad frame is dropped and the call goes on; an unreadable stream gets an
error frame and a hangup, and only that call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..audio.pcm import BYTES_PER_SAMPLE, InvalidAudio
from ..config import AudioSocketSpec
from ..pipeline.events import ErrorEvent, SessionEvent
from ..pipeline.input_limits import InputRefused
from ..sessions.directory import RESUMABLE_OUTCOMES, AdmissionError, CallKey, Grant, audiosocket_call_key
from ..transports import transport_metrics
from ..transports.audio_budget import AudioBudget, Verdict
from ..transports.hub import LiveSession, SessionHub
from . import audiosocket_wire as wire

log = logging.getLogger(__name__)

TRANSPORT = "audiosocket"
FIRST_FRAME_TIMEOUT_SECONDS = 10.0
READ_BYTES = 4096
# Agent audio a PBX may leave unread before frames are dropped: one second.
MAX_UNSENT_BYTES = 50 * (wire.HEADER.size + wire.FRAME_BYTES)
# UUIDs remembered at most (calls live or within their resume window); the oldest go first.
MAX_KNOWN_CALLS = 10_000
CLOSE_WAIT_SECONDS = 10.0
# Refused frames logged per connection; the rest are only counted (a peer must not flood the log).
MAX_LOGGED_REFUSALS = 20
# A redial that reaches another pod while the call is still live on its pod (the PBX redialled before
# that pod saw the old connection close): ask again for this long, until that pod lets the call go.
TAKEOVER_WAIT_SECONDS = 3.0
TAKEOVER_RETRY_SECONDS = 0.1


@dataclass
class _Known:
    session_id: str
    resume_token: str
    live: LiveSession | None
    until: float | None  # monotonic deadline once no connection serves the call


class CallKeys:
    """UUID -> the session it names, while live and for the resume window after its connection."""

    def __init__(self, keep_seconds: float, max_calls: int = MAX_KNOWN_CALLS) -> None:
        self.keep_seconds = keep_seconds
        self.max_calls = max_calls
        self._calls: OrderedDict[uuid.UUID, _Known] = OrderedDict()

    def get(self, call: uuid.UUID, now: float) -> _Known | None:
        known = self._calls.get(call)
        if known is not None and known.until is not None and known.until < now:
            del self._calls[call]
            return None
        return known

    def put(self, call: uuid.UUID, known: _Known) -> None:
        self._calls[call] = known
        self._calls.move_to_end(call)
        while len(self._calls) > self.max_calls:
            self._calls.popitem(last=False)

    def detach(self, call: uuid.UUID, live: LiveSession, resumable: bool, now: float) -> bool:
        """``live``'s connection is over: keep the key for a resume, or forget it (True)."""
        known = self._calls.get(call)
        if known is None or known.live is not live:
            return False  # a newer connection took the call over
        if resumable:
            known.live, known.until = None, now + self.keep_seconds
            return False
        del self._calls[call]
        return True

    def forget(self, call: uuid.UUID) -> None:
        self._calls.pop(call, None)


class AudioSocketSink:
    """Agent audio and the end of the call, written to the PBX's connection without blocking."""

    def __init__(self, writer: asyncio.StreamWriter, call: uuid.UUID) -> None:
        self.writer = writer
        self.call = call
        self.frames_sent = 0
        self.ended: str | None = None

    def on_audio(self, frame: bytes | None) -> None:
        if frame is None or self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            transport_metrics.DROPPED_FRAMES_TOTAL.labels(TRANSPORT).inc()
            return
        self.writer.write(wire.audio(frame))
        self.frames_sent += 1

    def on_event(self, event: SessionEvent) -> None:
        if isinstance(event, ErrorEvent):  # AudioSocket has no error text: the log has it
            log.warning("session error: %s", event.message, extra={"call_uuid": str(self.call)})

    def on_end(self, reason: str) -> None:
        self.ended = reason
        if reason == "error":
            self.send_error(wire.ErrorCode.ENDED)
        self.hang_up()

    def send_error(self, code: wire.ErrorCode) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.error(code))

    def hang_up(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.hangup())
            self.writer.close()


def read_credential(spec: AudioSocketSpec, credentials_dir: Path | None) -> str | None:
    """The API key of credentialSecretRef, mounted in the pod's credentials dir like the auth secrets."""
    ref = spec.credential_secret_ref
    if ref is None:
        return None
    if credentials_dir is None:
        raise ValueError("transport.audioSocket.credentialSecretRef needs VOICEFLEET_CREDENTIALS_DIR")
    return (credentials_dir / ref.name / ref.key).read_text().strip() or None


def bad_input(reason: str, message: str, extra: dict[str, str], logged: bool = True) -> None:
    transport_metrics.BAD_INPUT_TOTAL.labels(TRANSPORT, reason).inc()
    if logged:
        log.warning("audiosocket: %s", message, extra={"reason": reason, **extra})


class AudioSocketServer:
    def __init__(
        self, hub: SessionHub, spec: AudioSocketSpec, keep_seconds: float, credential: str | None = None
    ) -> None:
        self.hub = hub
        self.spec = spec
        self.keys = CallKeys(keep_seconds)
        self.credential = credential  # what new calls are admitted with (see read_credential)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = str(writer.get_extra_info("peername"))
        try:
            await self._call(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("audiosocket connection lost: %s", exc, extra={"peer": peer})
        except asyncio.CancelledError:
            pass  # the pod stops; asyncio's server would log a cancelled handler as an error
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        parser = wire.FrameParser()
        try:
            async with asyncio.timeout(FIRST_FRAME_TIMEOUT_SECONDS):
                call, backlog = await _first_frame(reader, parser)
        except TimeoutError:
            _give_up(writer, "no_uuid", f"no UUID frame within {FIRST_FRAME_TIMEOUT_SECONDS:g} s", peer)
            return
        except wire.ProtocolError as exc:
            _give_up(writer, exc.reason, str(exc), peer)
            return
        if call is None:
            return  # the peer left before naming a call
        sink = AudioSocketSink(writer, call)
        live = await self._admit(call, sink, peer)
        if live is None:
            return
        reading = asyncio.get_running_loop().create_task(self._read(reader, parser, backlog, live, sink))
        ended = asyncio.get_running_loop().create_task(live.finished.wait())
        try:
            await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not live.finished.is_set():
                live.request_close("disconnected")  # the PBX hung up on the socket: resumable
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await live.finished.wait()
        finally:
            for task in (reading, ended):
                task.cancel()
            resumable = live.end_reason == "disconnected" or live.end_reason in RESUMABLE_OUTCOMES
            if self.keys.detach(call, live, resumable, time.monotonic()):
                await self.hub.directory.forget_call_key(audiosocket_call_key(call))
            log.info(
                "audiosocket call ended",
                extra={
                    "call_uuid": str(call),
                    "session_id": live.id,
                    "reason": live.end_reason,
                    "frames_sent": sink.frames_sent,
                },
            )

    async def _admit(self, call: uuid.UUID, sink: AudioSocketSink, peer: str) -> LiveSession | None:
        """The call's session: resumed (or taken over) for a known UUID, else a new one. A UUID this pod
        does not know may name a call another pod served (the PBX reconnected elsewhere, or that pod
        died): the fleet remembers it in the session store."""
        known = self.keys.get(call, time.monotonic())
        if known is None and (
            remembered := await self.hub.directory.recall_call_key(audiosocket_call_key(call))
        ):
            known = _Known(remembered.session_id, remembered.resume_token, None, None)
        if known is not None and known.live is not None and not known.live.finished.is_set():
            # The same call on a new connection: the old one is gone even if its socket has not said so.
            known.live.request_close("disconnected")
            await known.live.finished.wait()
        if known is None and not self.spec.new_calls:
            transport_metrics.ADMISSIONS_REFUSED_TOTAL.labels(TRANSPORT, "not_found").inc()
            self._refuse(sink, call, "unknown call UUID and newCalls is off", peer)
            return None
        try:
            live = await self._open(known, sink)
        except AdmissionError as exc:
            if known is not None and exc.code == "not_found":
                self.keys.forget(call)
                await self.hub.directory.forget_call_key(audiosocket_call_key(call))
            self._refuse(sink, call, f"{exc.code}: {exc}", peer)
            return None
        token = known.resume_token if known else live.resume_token
        assert token, "a new session always has a resume token"
        self.keys.put(call, _Known(live.id, token, live, None))
        # Remembered for the whole call and its resume window after: a reconnect may reach any pod.
        ttl = self.hub.config.session.max_duration_seconds + self.keys.keep_seconds
        await self.hub.directory.remember_call_key(
            audiosocket_call_key(call), CallKey(session_id=live.id, resume_token=token), ttl
        )
        log.info(
            "audiosocket call admitted",
            extra={"call_uuid": str(call), "session_id": live.id, "resumed": live.resumed, "peer": peer},
        )
        return live

    async def _open(self, known: _Known | None, sink: AudioSocketSink) -> LiveSession:
        """Open the call here. A PBX cannot be sent to another pod, so the call comes here wherever it
        was (roaming): a call its pod no longer streams (the old connection closed) is taken over at
        once; one still live there is asked for again until that pod lets it go, up to
        TAKEOVER_WAIT_SECONDS (then wrong_pod)."""
        deadline = time.monotonic() + TAKEOVER_WAIT_SECONDS
        while True:
            try:
                return await self.hub.open(
                    transport=TRANSPORT,
                    session_id=known.session_id if known else None,
                    resume_token=known.resume_token if known else None,
                    output_sample_rate=wire.SAMPLE_RATE,
                    sink=sink,
                    credential=None if known else self.credential,
                    roaming=True,
                )
            except AdmissionError as exc:
                if exc.code != "wrong_pod" or time.monotonic() >= deadline or sink.writer.is_closing():
                    raise
            await asyncio.sleep(TAKEOVER_RETRY_SECONDS)

    async def join_key(self, grant: Grant) -> uuid.UUID:
        """The AudioSocket UUID of a session created through the session API (``audioSocket: true``):
        the session id read as a UUID. Remembered with the session's resume token, here and in the
        fleet, for the token's lifetime, so a PBX that dials it into any pod joins that session."""
        call = uuid.UUID(hex=grant.session_id)
        ttl = max(1.0, grant.token_expires_unix - time.time())
        self.keys.put(call, _Known(grant.session_id, grant.resume_token, None, time.monotonic() + ttl))
        key = CallKey(session_id=grant.session_id, resume_token=grant.resume_token)
        await self.hub.directory.remember_call_key(audiosocket_call_key(call), key, ttl)
        return call

    def _refuse(self, sink: AudioSocketSink, call: uuid.UUID, why: str, peer: str) -> None:
        log.warning("audiosocket call refused: %s", why, extra={"call_uuid": str(call), "peer": peer})
        sink.send_error(wire.ErrorCode.REFUSED)
        sink.hang_up()

    async def _read(
        self,
        reader: asyncio.StreamReader,
        parser: wire.FrameParser,
        backlog: list[wire.Frame | wire.Refused],
        live: LiveSession,
        sink: AudioSocketSink,
    ) -> None:
        """The PBX's frames into the session until it hangs up, leaves, or sends what cannot be read."""
        session = live.session
        budget = AudioBudget(session.config.session.limits.audio_burst_seconds, time.monotonic())
        extra = {"call_uuid": str(sink.call), "session_id": live.id}
        items = backlog
        refusals = 0
        while True:
            for item in items:
                if isinstance(item, wire.Refused):
                    refusals += 1
                    bad_input(item.reason, item.message, extra, refusals <= MAX_LOGGED_REFUSALS)
                elif item.kind == wire.Kind.AUDIO:
                    seconds = len(item.payload) / (BYTES_PER_SAMPLE * wire.SAMPLE_RATE)
                    verdict = budget.take(seconds, time.monotonic())
                    if verdict is Verdict.FLOOD:
                        bad_input("audio_rate", "audio flood: call ended", extra)
                        live.request_close("input_flood")
                        return
                    if verdict is not Verdict.TAKE:
                        if verdict is Verdict.REFUSE_FIRST:
                            bad_input("audio_rate", "audio faster than real time: dropped", extra)
                        continue
                    try:
                        session.push_audio(item.payload, wire.SAMPLE_RATE)
                    except InvalidAudio as exc:
                        bad_input("audio", str(exc), extra)
                elif item.kind == wire.Kind.DTMF:
                    try:
                        session.push_dtmf(item.payload.decode("ascii"))
                    except InputRefused as exc:
                        bad_input(exc.reason, str(exc), extra)
                elif item.kind == wire.Kind.HANGUP:
                    await live.end_by_caller()
                    return
                elif item.kind == wire.Kind.UUID:
                    bad_input("duplicate_uuid", "UUID frame after the first: ignored", extra)
                elif item.kind == wire.Kind.ERROR:
                    log.warning(
                        "the PBX reported an error %s", item.payload.hex() or "(no code)", extra=extra
                    )
            data = await reader.read(READ_BYTES)
            if not data:
                return  # the PBX closed the socket without a hangup frame: resumable
            try:
                items = parser.feed(data)
            except wire.ProtocolError as exc:
                bad_input(exc.reason, str(exc), extra)
                sink.send_error(wire.ErrorCode.PROTOCOL)
                live.request_close("invalid_message")
                return


async def _first_frame(
    reader: asyncio.StreamReader, parser: wire.FrameParser
) -> tuple[uuid.UUID | None, list[wire.Frame | wire.Refused]]:
    """The call's UUID and the frames that came with it; raises ProtocolError when it is not first."""
    while True:
        data = await reader.read(READ_BYTES)
        if not data:
            return None, []
        items = parser.feed(data)
        if items:
            break
    first, rest = items[0], items[1:]
    if isinstance(first, wire.Refused) or first.kind != wire.Kind.UUID:
        got = first.reason if isinstance(first, wire.Refused) else f"kind 0x{first.kind:02x}"
        raise wire.ProtocolError("no_uuid", f"the first frame must be the call's UUID (16 bytes), got {got}")
    return wire.call_uuid(first), rest


def _give_up(writer: asyncio.StreamWriter, reason: str, message: str, peer: str) -> None:
    bad_input(reason, message, {"peer": peer})
    writer.write(wire.error(wire.ErrorCode.PROTOCOL) + wire.hangup())
