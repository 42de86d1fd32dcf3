"""Caller over WebRTC (aiortc): WHIP-style signaling, Opus both ways, the "events" data channel."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections import deque
from urllib.parse import urljoin, urlparse

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

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
from .audio import FRAME_MS, frames
from .grpc_client import pace, play_realtime
from .record import CallRecorder


class MicrophoneTrack(MediaStreamTrack):
    """The caller's microphone as ready mono Opus packets (as the pod sends its audio).

    A queued 20 ms frame goes out as soon as it is queued, as a real microphone hands
    over each frame when its capture ends; a pre-encoded silence packet every 20 ms
    otherwise. Frames are encoded inline (mono, ~0.1 ms), which spares aiortc's stereo
    resampling and its encoder thread hop per frame; callers that say the same audio
    many times (benchmarks) can queue packets encoded once with ``encode_frames``."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: deque[bytes] = deque()
        self._encoder: MonoEncoder | None = None
        self._silence = silence_packet()
        self._queued = asyncio.Event()
        self._last: float | None = None
        self._index = 0

    def put(self, frame: bytes) -> None:
        """A 20 ms PCM16 frame at 48 kHz mono."""
        if self._encoder is None:
            self._encoder = MonoEncoder()
        self.put_packet(self._encoder.encode(frame))

    def put_packet(self, packet: bytes) -> None:
        """One Opus packet of 20 ms."""
        self.queue.append(packet)
        self._queued.set()

    async def recv(self) -> av.Packet:
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
    """``async with WebRTCCaller(url) as call:`` connects and waits until media flows."""

    def __init__(
        self,
        url: str,
        *,
        session_id: str | None = None,
        resume_token: str | None = None,
        recorder: CallRecorder | None = None,
        http: aiohttp.ClientSession | None = None,
        local_address: str | None = None,
    ) -> None:
        self.url = url
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
        self._http = http
        self._own_http = http is None
        self._decoder = MonoDecoder()
        self._channel_open = asyncio.Event()

    async def __aenter__(self) -> WebRTCCaller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self, within: float = 30.0) -> None:
        pc, recorder = self.pc, self.recorder
        pc.addTransceiver(self.microphone, direction="sendrecv")
        # This caller measures the agent and plays nothing aloud: no playout smoothing delay, and each
        # packet is decoded to mono as it arrives (no decoder thread per call).
        pass_through_audio(pc, self._on_packet)
        self.channel.on("open", self._channel_open.set)
        self.channel.on("message", self._on_message)
        host = urlparse(self.url).hostname or ""
        local = self.local_address or ("127.0.0.1" if _is_loopback(host) else None)
        if local:
            # Offer that address only: the pod is reached without touching other interfaces.
            confine(pc, IcePolicy(addresses=[local]), PortAllocator(0, 0))
        await pc.setLocalDescription(await pc.createOffer())
        if self._http is None:
            self._http = aiohttp.ClientSession()
        body = {
            "sdp": pc.localDescription.sdp,
            "type": "offer",
            "session_id": self.session_id,
            "resume_token": self.resume_token,
        }
        async with self._http.post(self.url, json=body) as response:
            payload = await response.json()
            if response.status != 201:
                raise ConnectionError(f"offer refused ({response.status}): {payload.get('message', payload)}")
        self.location = urljoin(self.url, payload["location"])
        self.answer_sdp = payload["sdp"]
        recorder.summary.resume_token = payload.get("resume_token")
        recorder.event("session_started", {"session_id": payload["session_id"]})
        self.session_id = payload["session_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=payload["sdp"], type="answer"))
        async with asyncio.timeout(within):
            await self._channel_open.wait()

    def _on_message(self, message: str | bytes) -> None:
        data = json.loads(message)
        self.recorder.event(data.pop("type", "unknown"), data)

    def _on_packet(self, payload: bytes) -> None:
        pcm = self._decoder.decode(payload)
        if pcm:
            self.recorder.audio(pcm)

    def send_audio(self, pcm: bytes) -> None:
        """Queue 48 kHz mono PCM16; it is sent in 20 ms frames as the microphone track is read."""
        for frame in frames(pcm, SAMPLE_RATE):
            self.microphone.put(frame)

    def send_text(self, text: str) -> None:
        self.channel.send(json.dumps({"type": "text", "text": text}))

    def send_channel(self, raw: str) -> None:
        self.channel.send(raw)

    async def play(self, pcm: bytes, speech_ends: list[int] | None = None) -> None:
        """Speak ``pcm`` (48 kHz mono) in real time, marking speech ends when those frames go out."""
        await play_realtime(self.microphone.put, self.recorder, pcm, SAMPLE_RATE, speech_ends)

    async def play_packets(self, packets: list[bytes], speech_ends: list[int] | None = None) -> None:
        """Like ``play`` with audio already encoded by ``encode_frames``."""
        await pace(self.microphone.put_packet, self.recorder, packets, speech_ends)

    async def end(self, reason: str = "caller hung up") -> None:
        if self.location and self._http is not None:
            async with self._http.delete(self.location) as response:
                await response.read()
            self.location = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.end()
        self.microphone.stop()
        await self.pc.close()
        if self._own_http and self._http is not None:
            await self._http.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
