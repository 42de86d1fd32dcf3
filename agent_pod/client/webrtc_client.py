"""Caller over WebRTC (aiortc): WHIP-style signaling, Opus both ways, the "events" data channel.

The caller tells the pod it follows migrations (``follow_migrations``: the offer's
``accepts_migration``) and follows each ``migration_offer`` as it comes (``auto_follow``; else through
``follow``): it opens the call on the new pod with a second peer connection while it keeps talking on
the old one, then switches its microphone over, tells the old pod it followed and closes the old
connection. The recorder sees one call throughout (see docs/migration.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..config import MigrationSpec
from ..transports.ice import IcePolicy, PortAllocator, confine
from ..transports.jitter import pass_through_audio
from ..transports.opus import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    TIME_BASE,
    MonoDecoder,
    MonoEncoder,
    silence_packet,
)
from .caller_audio import FRAME_MS, frames
from .grpc_client import pace, play_realtime
from .record import CallRecorder

log = logging.getLogger(__name__)

# After switching to the new pod, the old connection is closed once the old pod has closed its side
# (it ends the call with reason "migrated"), or after this long.
RETIRE_SECONDS = 2.0
# Time to follow an offer when it does not say (the pod's default followTimeoutSeconds).
DEFAULT_FOLLOW_MS = int(MigrationSpec().follow_timeout_seconds * 1000)


class MicrophoneTrack(MediaStreamTrack):
    """The caller's microphone as ready mono Opus packets (as the pod sends its audio).

    A queued 20 ms frame goes out as soon as it is queued, as a real microphone hands
    over each frame when its capture ends; a pre-encoded silence packet every 20 ms
    otherwise. Frames are encoded inline (mono, ~0.1 ms), which spares aiortc's stereo
    resampling and its encoder thread hop per frame; callers that say the same audio
    many times (benchmarks) can queue packets encoded once with ``encode_frames``.

    A paused track sends nothing at all (not even silence): a call that moves to another
    pod opens the new connection paused and pauses the old one when it switches, so each
    pod hears the caller only while it is the one the caller talks to."""

    kind = "audio"

    def __init__(self, paused: bool = False) -> None:
        super().__init__()
        self.queue: deque[bytes] = deque()
        self._encoder: MonoEncoder | None = None
        self._silence = silence_packet()
        self._queued = asyncio.Event()
        self._resumed = asyncio.Event()
        self._paused = paused
        self._last: float | None = None
        self._index = 0
        self.queued_frames = 0  # frames (or packets) queued on this track so far

    @property
    def paused(self) -> bool:
        return self._paused

    def put(self, frame: bytes) -> None:
        """A 20 ms PCM16 frame at 48 kHz mono."""
        if self._encoder is None:
            self._encoder = MonoEncoder()
        self.put_packet(self._encoder.encode(frame))

    def put_packet(self, packet: bytes) -> None:
        """One Opus packet of 20 ms."""
        self.queue.append(packet)
        self.queued_frames += 1
        self._queued.set()

    def pause(self) -> None:
        """Send nothing from the next packet on (until ``resume``)."""
        self._paused = True
        self._resumed.clear()

    def resume(self) -> None:
        """Send again: queued packets at once, then a packet every 20 ms."""
        self._paused = False
        self._last = None
        self._resumed.set()
        self._queued.set()

    def take_queued(self) -> list[bytes]:
        """The packets queued and not sent yet (they are no longer sent here)."""
        packets = list(self.queue)
        self.queue.clear()
        return packets

    def stop(self) -> None:
        super().stop()
        self._resumed.set()  # a recv() waiting on a paused track ends

    async def recv(self) -> av.Packet:
        while self._paused and self.readyState == "live":
            await self._resumed.wait()
        if self.readyState != "live":
            raise MediaStreamError
        deadline = time.monotonic() if self._last is None else self._last + FRAME_MS / 1000
        while not self.queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._queued.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._queued.wait()
        self._last = time.monotonic()
        packet = av.Packet(self.queue.popleft() if self.queue else self._silence)
        packet.pts = self._index * FRAME_SAMPLES
        packet.time_base = TIME_BASE
        self._index += 1
        return packet


def encode_frames(pcm: bytes) -> list[bytes]:
    """48 kHz mono PCM16 as 20 ms Opus packets (the last frame padded with silence)."""
    encoder = MonoEncoder()
    return [encoder.encode(frame) for frame in frames(pcm, SAMPLE_RATE)]


class WebRTCCaller:
    """``async with WebRTCCaller(url) as call:`` connects and waits until media flows.

    ``pc``, ``channel``, ``microphone``, ``location`` and ``session_id`` always belong to the connection
    the call currently goes through; ``pods`` names the pods that served the call, in order (the first
    pod's name is only learnt from the ``migration_completed`` event of the pod the call moved to: it is
    ``""`` until then)."""

    def __init__(
        self,
        url: str,
        *,
        session_id: str | None = None,
        resume_token: str | None = None,
        recorder: CallRecorder | None = None,
        http: aiohttp.ClientSession | None = None,
        local_address: str | None = None,
        follow_migrations: bool = True,
        auto_follow: bool = True,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self.api_key = api_key  # API key or JWT: what a new session (no session_id) needs
        # The one local address offered to the pod (default: loopback for a pod on loopback, else all).
        self.local_address = local_address
        self.session_id = session_id
        self.resume_token = resume_token
        self.recorder = recorder or CallRecorder()
        self.sample_rate = SAMPLE_RATE
        self.microphone = MicrophoneTrack()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("events")
        self.location: str | None = None
        self.answer_sdp = ""
        self.follow_migrations = follow_migrations  # told to the pod: this caller follows moves
        self.auto_follow = auto_follow  # follow offers as they come (else the owner calls follow())
        self.pods: list[str] = []
        self.follow_error = ""  # why the last migration offer could not be followed
        self._http = http
        self._own_http = http is None
        self._following: asyncio.Task[bool] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: list[tuple[RTCPeerConnection, MicrophoneTrack]] = []

    async def __aenter__(self) -> WebRTCCaller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, within: float = 30.0) -> None:
        opened = asyncio.Event()
        payload = await self._negotiate(
            self.url,
            self.pc,
            self.microphone,
            self.channel,
            opened,
            {"resume_token": self.resume_token, "accepts_migration": self.follow_migrations},
        )
        self.location = urljoin(self.url, payload["location"])
        self.answer_sdp = payload["sdp"]
        self.recorder.summary.resume_token = payload.get("resume_token")
        self.recorder.event("session_started", {"session_id": payload["session_id"]})
        self.session_id = payload["session_id"]
        self.pods.append("")
        async with asyncio.timeout(within):
            await opened.wait()

    async def _negotiate(
        self,
        url: str,
        pc: RTCPeerConnection,
        microphone: MicrophoneTrack,
        channel: RTCDataChannel,
        opened: asyncio.Event,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """Offer ``pc`` to the pod at ``url`` and set its answer; the answer JSON. Raises ConnectionError
        when the pod refuses the offer."""
        pc.addTransceiver(microphone, direction="sendrecv")
        # This caller measures the agent and plays nothing aloud: no playout smoothing delay, and each
        # packet is decoded to mono as it arrives (no decoder thread per call).
        pass_through_audio(pc, self._packet_handler(pc))
        channel.on("open", opened.set)
        channel.on("message", lambda message: self._on_message(channel, message))
        host = urlparse(url).hostname or ""
        local = self.local_address or ("127.0.0.1" if _is_loopback(host) else None)
        if local:
            # Offer that address only: the pod is reached without touching other interfaces.
            confine(pc, IcePolicy(addresses=[local]), PortAllocator(0, 0))
        await pc.setLocalDescription(await pc.createOffer())
        if self._http is None:
            self._http = aiohttp.ClientSession()
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "session_id": self.session_id, **extra}
        headers = (
            {"Authorization": f"Bearer {self.api_key}"} if self.api_key and not self.session_id else None
        )
        async with self._http.post(url, json=body, headers=headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            if response.status != 201:
                error = payload.get("error") or {}
                raise ConnectionError(f"offer refused ({response.status}): {error.get('message', payload)}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=payload["sdp"], type="answer"))
        return payload

    def _on_message(self, channel: RTCDataChannel, message: str | bytes) -> None:
        data = json.loads(message)
        kind = data.pop("type", "unknown")
        if kind == "session_ended" and data.get("reason") == "migrated" and channel is not self.channel:
            return  # the old pod handed the call over; the call goes on through the new connection
        if kind == "migration_completed":
            self._name_previous_pod(data.get("from_pod", ""))
        self.recorder.event(kind, data)
        if kind == "migration_offer" and self.auto_follow and self._following is None:
            self._following = asyncio.get_running_loop().create_task(self.follow({"type": kind, **data}))

    def _name_previous_pod(self, name: str) -> None:
        if name and len(self.pods) >= 2 and not self.pods[-2]:
            self.pods[-2] = name

    def _packet_handler(self, pc: RTCPeerConnection) -> Callable[[bytes], None]:
        decoder = MonoDecoder()

        def on_packet(payload: bytes) -> None:
            pcm = decoder.decode(payload)
            if pcm and pc is self.pc:  # a connection the call moved away from says nothing more
                self.recorder.audio(pcm)

        return on_packet

    async def follow(self, offer: dict[str, Any]) -> bool:
        """Follow a ``migration_offer`` (its data-channel fields): open the call on the pod it names while
        the microphone still talks to this one, then switch over; on failure tell this pod and stay.
        Whether the call moved."""
        old_pc, old_channel, old_microphone = self.pc, self.channel, self.microphone
        url = urljoin(self.url, offer["webrtc_url"])
        within = max(0.5, (offer.get("follow_within_ms") or DEFAULT_FOLLOW_MS) / 1000 - 0.5)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        microphone = MicrophoneTrack(paused=True)  # silent until the switch: the old pod hears the caller
        channel = pc.createDataChannel("events")
        opened = asyncio.Event()
        try:
            async with asyncio.timeout(within):
                payload = await self._negotiate(
                    url,
                    pc,
                    microphone,
                    channel,
                    opened,
                    {
                        "migration_token": offer["migration_token"],
                        "accepts_migration": self.follow_migrations,
                    },
                )
                await opened.wait()
        except (TimeoutError, ConnectionError, aiohttp.ClientError, ValueError, KeyError) as exc:
            self.follow_error = f"the new pod could not be reached: {exc or type(exc).__name__}"
            log.info("migration not followed: %s", self.follow_error)
            microphone.stop()
            with contextlib.suppress(Exception):
                await pc.close()
            _send(old_channel, {"type": "migration", "followed": False})
            if self._following is asyncio.current_task():
                self._following = None
            return False
        # The switch: from here on every frame goes to the new pod, the ones not sent yet included; the
        # old pod replays to the new one what it heard since it froze the call.
        self.pc, self.channel, self.microphone = pc, channel, microphone
        old_microphone.pause()
        for packet in old_microphone.take_queued():
            microphone.put_packet(packet)
        microphone.resume()
        self.location = urljoin(url, payload["location"])
        self.answer_sdp = payload["sdp"]
        self.session_id = payload["session_id"]
        if payload.get("resume_token"):
            self.resume_token = payload["resume_token"]
        self.pods.append(str(offer.get("pod", "")))
        _send(old_channel, {"type": "migration", "followed": True})
        self.recorder.event(
            "session_started",
            {
                "session_id": payload["session_id"],
                "resume_token": payload.get("resume_token"),
                "migrated": bool(payload.get("migrated")),
                "pod": offer.get("pod", ""),
            },
        )
        self._retired.append((old_pc, old_microphone))
        task = asyncio.get_running_loop().create_task(self._retire(old_pc, old_channel, old_microphone))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        if self._following is asyncio.current_task():
            self._following = None
        return True

    async def _retire(
        self, pc: RTCPeerConnection, channel: RTCDataChannel, microphone: MicrophoneTrack
    ) -> None:
        """Close a connection the call moved away from once its pod has closed its side (or soon anyway)."""
        closed = asyncio.Event()

        def check() -> None:
            if channel.readyState == "closed" or pc.connectionState in ("closed", "failed"):
                closed.set()

        channel.on("close", check)
        pc.on("connectionstatechange", check)
        check()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETIRE_SECONDS):
                await closed.wait()
        microphone.stop()
        await pc.close()

    def send_audio(self, pcm: bytes) -> None:
        """Queue 48 kHz mono PCM16; it is sent in 20 ms frames as the microphone track is read."""
        for frame in frames(pcm, SAMPLE_RATE):
            self.microphone.put(frame)

    def send_text(self, text: str) -> None:
        self.channel.send(json.dumps({"type": "text", "text": text}))

    def send_channel(self, raw: str) -> None:
        self.channel.send(raw)

    async def play(self, pcm: bytes, speech_ends: list[int] | None = None) -> None:
        """Speak ``pcm`` (48 kHz mono) in real time, marking speech ends when those frames go out.
        Each frame goes to the microphone of the current connection: a move mid-utterance redirects the
        rest."""
        await play_realtime(
            lambda frame: self.microphone.put(frame), self.recorder, pcm, SAMPLE_RATE, speech_ends
        )

    async def play_packets(self, packets: list[bytes], speech_ends: list[int] | None = None) -> None:
        """Like ``play`` with audio already encoded by ``encode_frames``."""
        await pace(lambda packet: self.microphone.put_packet(packet), self.recorder, packets, speech_ends)

    async def end(self, reason: str = "caller hung up") -> None:
        if self._following is not None:  # hang up where the call goes on, not on the pod it leaves
            with contextlib.suppress(Exception):
                await self._following
        if self.location and self._http is not None:
            async with self._http.delete(self.location) as response:
                await response.read()
            self.location = None

    async def close(self) -> None:
        if self._following is not None:
            with contextlib.suppress(Exception):
                await self._following
        with contextlib.suppress(Exception):
            await self.end()
        self.microphone.stop()
        await self.pc.close()
        # (a peer connection whose close() was cancelled never closes: the retiring tasks are awaited)
        for pc, microphone in self._retired:
            microphone.stop()
            with contextlib.suppress(Exception):
                await pc.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._own_http and self._http is not None:
            await self._http.close()


def _send(channel: RTCDataChannel, message: dict[str, Any]) -> None:
    if channel.readyState == "open":
        channel.send(json.dumps(message))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
