"""The WebRTC transport (aiortc): one peer connection per caller, Opus both ways, an "events" data channel.

Signaling is WHIP-style HTTP (see signaling.py): the caller POSTs an SDP offer, gets
the answer and a resource URL to DELETE when it hangs up. Caller packets are taken
from aiortc's receive path as they arrive and decoded to 48 kHz mono for the session
(which resamples to what its VAD/STT want). Agent audio is pulled on the pod's shared
playout tick, encoded to Opus and queued for aiortc's sender, with a silence packet
while the agent says nothing, so RTP timing follows the pod clock (see opus.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from pydantic import BaseModel, Field, ValidationError

from ..audio.pcm import BYTES_PER_SAMPLE, InvalidAudio
from ..pipeline.events import ErrorEvent, SessionEvent
from ..pipeline.input_limits import InputRefused
from ..sessions.directory import AdmissionError
from . import transport_metrics
from .audio_budget import AudioBudget, Verdict
from .hub import LiveSession, SessionHub
from .ice import IcePolicy, PortAllocator, PortsExhausted, confine
from .jitter import pass_through_audio
from .opus import FRAME_SAMPLES, SAMPLE_RATE, TIME_BASE, MonoDecoder, MonoEncoder, silence_packet
from .wire import event_to_json

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "events"
# A peer that has not connected by then (ICE failed silently) is given up on.
CONNECT_TIMEOUT_SECONDS = 15.0
PORTS_RETRY_SECONDS = 1.0  # ports come back as calls end; another pod may have some now
# Frames waiting for aiortc's sender; more means the sender stalled, and old audio is dropped.
MAX_QUEUED_FRAMES = 10
FLUSH_SECONDS = 1.0
# Opus DTX as libopus does it: silence is sent for 200 ms after speech, then every 400 ms.
DTX_HANGOVER_TICKS = 10
DTX_SILENCE_EVERY_TICKS = 20


SEND_DELAY = transport_metrics.SEND_DELAY_SECONDS.labels("webrtc")


def send_silence(silent_ticks: int) -> bool:
    """Whether the ``silent_ticks``-th silent tick in a row sends a silence packet (DTX)."""
    return (
        silent_ticks <= DTX_HANGOVER_TICKS
        or (silent_ticks - DTX_HANGOVER_TICKS) % DTX_SILENCE_EVERY_TICKS == 0
    )


class OfferError(ValueError):
    """The caller's offer cannot be answered (HTTP 400)."""


class ChannelMessage(BaseModel):
    """What a caller may send on the events data channel: typed text, the end of the call, or its answer
    to a migration offer (``migration`` with ``followed``)."""

    type: str = Field(pattern="^(text|end|migration)$")
    # The session refuses text over spec.session.limits.maxTextChars; this is the most it can be set to.
    text: str = Field(default="", max_length=16384)
    followed: bool = False


class AgentAudioTrack(MediaStreamTrack):
    """Agent audio for aiortc's sender as ready Opus packets, on the playout ticks.

    Every tick's frame is sent while the agent speaks. While it is silent, the
    track does what Opus DTX (RFC 7587) does: silence packets for the first
    ``DTX_HANGOVER_TICKS`` ticks, then one every ``DTX_SILENCE_EVERY_TICKS``;
    the receiver conceals the gaps as silence. RTP timestamps count every tick,
    sent or not, so they keep real time and the receiver's playout stays
    aligned. A silent caller-facing stream then costs a twentieth of the
    packets (RTP, SRTP and a send system call each, on both ends).
    """

    kind = "audio"

    def __init__(self, opus_complexity: int = 5) -> None:
        super().__init__()
        self._frames: deque[tuple[int, bytes | None, float]] = deque()  # (RTP time, frame, handed at)
        self._waiter: asyncio.Future[None] | None = None
        self._encoder = MonoEncoder(opus_complexity)
        self._silence = silence_packet()
        self._tick_pts = 0  # RTP time of the next playout tick
        self._silent_ticks = 0
        self.dropped = 0

    def put(self, pcm: bytes | None) -> None:
        """One playout tick: 20 ms of agent audio at 48 kHz, or None while the agent is silent."""
        pts = self._tick_pts
        self._tick_pts += FRAME_SAMPLES
        if pcm is None:
            self._silent_ticks += 1
            if not send_silence(self._silent_ticks):
                return
        else:
            self._silent_ticks = 0
        if len(self._frames) >= MAX_QUEUED_FRAMES:
            self._frames.popleft()
            self.dropped += 1
            transport_metrics.DROPPED_FRAMES_TOTAL.labels("webrtc").inc()
        self._frames.append((pts, pcm, time.monotonic()))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> av.Packet:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        pts, pcm, handed = self._frames.popleft()
        SEND_DELAY.observe(time.monotonic() - handed)
        packet = av.Packet(self._silence if pcm is None else self._encoder.encode(pcm))
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class WebRTCPeer:
    """One caller: the peer connection and the hub's Sink for it."""

    def __init__(self, transport: WebRTCTransport, pc: RTCPeerConnection, resource_id: str) -> None:
        self.transport = transport
        self.pc = pc
        self.resource_id = resource_id
        self.track = AgentAudioTrack(transport.opus_complexity)
        self._decoder = MonoDecoder()
        self._budget: AudioBudget | None = None
        self._flooded = False  # cut off: its session is closing, later packets are dropped quietly
        self.live: LiveSession | None = None
        self.channel: RTCDataChannel | None = None
        self._pending: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    # -- Sink -----------------------------------------------------------------------------
    def on_audio(self, frame: bytes | None) -> None:
        self.track.put(frame)

    def on_event(self, event: SessionEvent) -> None:
        self.send_json(event_to_json(event))

    def on_end(self, reason: str) -> None:
        self.spawn(self.close())

    # -- helpers --------------------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_json(self, text: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        else:
            self._pending.append(text)

    def attach_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL:
            return
        self.channel = channel

        def flush() -> None:
            pending, self._pending = self._pending, []
            for text in pending:
                channel.send(text)

        if channel.readyState == "open":
            flush()
        else:
            channel.on("open", flush)
        channel.on("message", self._on_message)

    def _on_message(self, message: str | bytes) -> None:
        live = self.live
        if live is None:
            return
        try:
            parsed = ChannelMessage.model_validate_json(message)
        except ValidationError as exc:
            transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "channel_message").inc()
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            error = ErrorEvent(code="INVALID_ARGUMENT", message=f"data channel message refused: {problem}")
            self.send_json(event_to_json(error))
            return
        if parsed.type == "end":
            self.spawn(live.end_by_caller())
        elif parsed.type == "migration":
            if not live.report_migration(parsed.followed):
                transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "migration").inc()
                refused = "migration answer without an offer: ignored"
                self.send_json(event_to_json(ErrorEvent(code="INVALID_ARGUMENT", message=refused)))
        elif parsed.text.strip():
            try:
                live.session.push_text(parsed.text)
            except InputRefused as exc:
                transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", exc.reason).inc()
                self.send_json(event_to_json(ErrorEvent(code=exc.code, message=str(exc))))

    def on_caller_packet(self, payload: bytes) -> None:
        """One Opus packet of caller audio, straight from the receive path."""
        live = self.live
        if live is None or live.session.ended:
            return
        pcm = self._decoder.decode(payload)
        if not pcm:
            transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "audio").inc()
            return
        if not self._within_budget(live, len(pcm) / (BYTES_PER_SAMPLE * self._decoder.sample_rate)):
            return
        try:
            live.session.push_audio(pcm, self._decoder.sample_rate)
        except InvalidAudio as exc:
            transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "audio").inc()
            log.warning("caller audio refused: %s", exc, extra={"session_id": live.id})

    def _within_budget(self, live: LiveSession, seconds: float) -> bool:
        """RTP is paced by the caller's clock too: packets beyond real time plus a burst are dropped,
        and a peer that keeps flooding is hung up on."""
        if self._flooded:
            return False
        now = time.monotonic()
        if self._budget is None:
            self._budget = AudioBudget(live.session.config.session.limits.audio_burst_seconds, now)
        verdict = self._budget.take(seconds, now)
        if verdict is Verdict.TAKE:
            return True
        transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "audio_rate").inc()
        if verdict is Verdict.REFUSE_FIRST:
            message = "audio arrives faster than real time: dropped until it slows down"
            self.send_json(event_to_json(ErrorEvent(code="RESOURCE_EXHAUSTED", message=message)))
        elif verdict is Verdict.FLOOD:
            self._flooded = True
            log.warning("caller floods audio: call ended", extra={"session_id": live.id})
            live.request_close("input_flood")
        return False

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.transport.peers.pop(self.resource_id, None)
        self.track.stop()
        await self._flush_channel()
        with contextlib.suppress(Exception):
            await self.pc.close()

    async def _flush_channel(self) -> None:
        """Let the last events (SessionEnded) leave before the connection closes, for a moment at most."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount == 0:
            return
        drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = 0
        channel.on("bufferedamountlow", drained.set)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_SECONDS):
                await drained.wait()


class Answer(BaseModel):
    sdp: str
    type: str = "answer"
    session_id: str
    resource_id: str
    resume_token: str | None = None
    migrated: bool = False


class WebRTCTransport:
    """Every WebRTC caller of the pod."""

    def __init__(self, hub: SessionHub, policy: IcePolicy, opus_complexity: int) -> None:
        self.hub = hub
        self.policy = policy
        self.opus_complexity = opus_complexity
        self.allocator = PortAllocator(policy.port_min, policy.port_max)
        self.peers: dict[str, WebRTCPeer] = {}

    async def answer(
        self,
        offer_sdp: str,
        session_id: str | None,
        resume_token: str | None,
        migration_token: str | None = None,
        accepts_migration: bool = False,
        credential: str | None = None,
    ) -> Answer:
        """Answer an SDP offer and start its session. Raises OfferError or AdmissionError.
        ``credential`` (API key or JWT) is what a brand-new session (no ``session_id``) needs."""
        if "m=audio" not in offer_sdp:
            raise OfferError("the offer has no audio media section (m=audio)")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = WebRTCPeer(self, pc, uuid.uuid4().hex)
        pc.on("datachannel", peer.attach_channel)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError... on malformed SDP
                raise OfferError(f"malformed SDP offer: {exc or type(exc).__name__}") from exc
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio or audio[0].direction not in ("sendrecv", "recvonly", "sendonly"):
                raise OfferError("the offer's audio section is inactive")
            pass_through_audio(pc, peer.on_caller_packet)
            audio[0].sender.replaceTrack(peer.track)
            audio[0].direction = "sendrecv"
            confine(pc, self.policy, self.allocator)
            live = await self.hub.open(
                transport="webrtc",
                session_id=session_id,
                resume_token=resume_token,
                output_sample_rate=SAMPLE_RATE,
                sink=peer,
                migration_token=migration_token,
                accepts_migration=accepts_migration,
                credential=credential,
            )
            peer.live = live
            pc.on("connectionstatechange", lambda: self._state_changed(peer))
            try:
                await pc.setLocalDescription(await pc.createAnswer())
            except PortsExhausted as exc:
                await live.close("error")
                transport_metrics.ADMISSIONS_REFUSED_TOTAL.labels("webrtc", "unavailable").inc()
                log.warning("media ports exhausted: %s", exc)
                raise AdmissionError(
                    "unavailable",
                    "this pod has no free UDP port for media; retry shortly",
                    PORTS_RETRY_SECONDS,
                ) from exc
            except BaseException:
                await live.close("error")
                raise
        except BaseException:
            await peer.close()
            raise
        self.peers[peer.resource_id] = peer
        peer.spawn(self._connect_deadline(peer))
        return Answer(
            sdp=pc.localDescription.sdp,
            session_id=live.id,
            resource_id=peer.resource_id,
            resume_token=live.resume_token,
            migrated=live.moved_from is not None,
        )

    def _state_changed(self, peer: WebRTCPeer) -> None:
        state = peer.pc.connectionState
        if state in ("failed", "closed") and peer.live is not None:
            peer.live.request_close("disconnected")

    async def _connect_deadline(self, peer: WebRTCPeer) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await _connected(peer.pc)
            return
        if peer.live is not None and not peer.closed.is_set():
            # Not resumable: an offer that never connects must not hold a slot for the resume window.
            log.warning("caller never connected", extra={"session_id": peer.live.id})
            peer.live.request_close("never_connected")

    async def hangup(self, resource_id: str) -> bool:
        peer = self.peers.get(resource_id)
        if peer is None:
            return False
        if peer.live is not None:
            await peer.live.close("client_ended")
        await peer.close()
        return True

    async def aclose(self) -> None:
        await asyncio.gather(*(peer.close() for peer in list(self.peers.values())))


async def _connected(pc: RTCPeerConnection) -> None:
    done = asyncio.get_running_loop().create_future()

    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed") and not done.done():
            done.set_result(None)

    pc.on("connectionstatechange", check)
    check()
    await done
