"""A fake phone carrier: answers the webhook like Twilio/Telnyx/Plivo/Vonage would, then speaks the carrier's
Media Streams protocol over a real WebSocket.

Caller audio is replayed in real-time 20 ms frames with optional jitter and packet loss. Agent audio goes
into a simulated playout buffer: a frame received at t plays at t + ``playout_ms`` (never before the one
ahead of it has played); marks are acknowledged once the audio ahead of them has played; a clear drops
everything unplayed and answers the pending marks (as carriers do). ``played`` is what the caller heard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree as ET

import aiohttp
import jwt
import numpy as np
import soxr
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_pod.telephony import mulaw

FRAME_SECONDS = 0.02


def twilio_sign(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature, written from its documentation (independently of the pod's code)."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def plivo_v3_headers(token: str, url: str, form: dict[str, str], nonce: str) -> dict[str, str]:
    """Plivo's V3 signature headers for a POST of ``form`` to ``url`` (no query), written from Plivo's
    SDK (independently of the pod's code): HMAC-SHA256 of "url?{sorted name+value}.{nonce}"."""
    payload = url + "?" + "".join(f"{key}{form[key]}" for key in sorted(form)) + "." + nonce
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha256).digest()
    return {"X-Plivo-Signature-V3": base64.b64encode(digest).decode(), "X-Plivo-Signature-V3-Nonce": nonce}


@dataclass
class Answer:
    """What the webhook told the carrier: where to stream, and the parameters to send."""

    url: str
    parameters: dict[str, str]
    raw: str


async def call_webhook(
    http: aiohttp.ClientSession,
    base_url: str,
    carrier: str,
    auth_token: str | None = None,
    call_id: str = "CA1",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST the incoming-call webhook as the carrier would (Twilio, Plivo: signed when ``auth_token`` is
    given)."""
    form = {"CallSid": call_id, "From": "+15550100", "To": "+15550199"}
    url = f"{base_url}/v1/telephony/{carrier}/voice"
    sent = dict(headers or {})
    if auth_token and carrier == "plivo":
        sent.update(plivo_v3_headers(auth_token, url, form, nonce="05429567804466091622"))
    elif auth_token:
        sent["X-Twilio-Signature"] = twilio_sign(auth_token, url, form)
    async with http.post(url, data=form, headers=sent) as response:
        return response.status, await response.text()


def telnyx_headers(private_key: Ed25519PrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    """Telnyx's webhook signature headers: Ed25519 over "timestamp|body"."""
    signature = private_key.sign(f"{timestamp}|".encode() + body)
    return {
        "telnyx-timestamp": str(timestamp),
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
    }


def vonage_headers(secret: str, body: bytes) -> dict[str, str]:
    """Vonage's signed webhook: an HS256 JWT carrying the body's SHA-256."""
    claims = {"iat": int(time.time()), "payload_hash": hashlib.sha256(body).hexdigest()}
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def parse_answer(carrier: str, body: str) -> Answer:
    if carrier == "vonage":
        endpoint = json.loads(body)[0]["endpoint"][0]
        assert endpoint["type"] == "websocket" and endpoint["content-type"] == "audio/l16;rate=16000"
        return Answer(endpoint["uri"], dict(endpoint["headers"]), body)
    root = ET.fromstring(body.split("?>", 1)[1])
    if carrier == "plivo":
        stream = root.find("Stream")
        assert stream is not None and stream.get("bidirectional") == "true" and stream.text
        return Answer(stream.text, {}, body)
    stream = root.find("Connect/Stream")
    assert stream is not None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return Answer(stream.get("url", ""), params, body)


@dataclass
class _Frame:
    pcm: bytes
    play_at: float


@dataclass
class _Mark:
    name: str


@dataclass
class FakeCarrierCall:
    carrier: str
    answer: Answer
    jitter_ms: float = 0.0
    loss: float = 0.0
    playout_ms: float = 100.0
    seed: int = 0
    received_frames: int = 0
    first_media_at: float | None = None
    played: bytearray = field(default_factory=bytearray)  # PCM16 at the stream's rate
    clears: list[float] = field(default_factory=list)
    marks_acked: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    last_voice_sent_at: float | None = None
    speech_started_at: float | None = None  # the first frame of the latest speak()
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _buffer: deque[_Frame | _Mark] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sequence: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def rate(self) -> int:
        return 16000 if self.carrier == "vonage" else 8000

    @property
    def played_ms(self) -> float:
        return len(self.played) / 2 / self.rate * 1000

    @property
    def received_ms(self) -> float:
        return self.received_frames * 20.0

    async def connect(self, http: aiohttp.ClientSession, start: bool = True) -> None:
        self._ws = await http.ws_connect(self.answer.url)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._play())]
        if start:
            await self.start()

    async def start(self, encoding: str | None = None) -> None:
        sid = "MZ" + "0" * 30
        params = self.answer.parameters
        if self.carrier == "twilio":
            await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            fmt = {"encoding": encoding or "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            start = {"streamSid": sid, "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"]}
            await self.send_json(
                {
                    "event": "start",
                    "streamSid": sid,
                    "start": {**start, "mediaFormat": fmt, "customParameters": params},
                }
            )
        elif self.carrier == "telnyx":
            await self.send_json({"event": "connected", "version": "1.0.0"})
            fmt = {"encoding": encoding or "PCMU", "sample_rate": 8000, "channels": 1}
            body = {"call_control_id": "v3:1", "media_format": fmt, "custom_parameters": params}
            await self.send_json({"event": "start", "sequence_number": "1", "stream_id": sid, "start": body})
        elif self.carrier == "plivo":
            fmt = {"encoding": encoding or "audio/x-mulaw", "sampleRate": 8000}
            body = {
                "callId": "c1",
                "streamId": sid,
                "accountId": "a1",
                "tracks": ["inbound"],
                "mediaFormat": fmt,
            }
            await self.send_json({"event": "start", "sequenceNumber": 1, "start": body})
        else:
            await self.send_json(
                {"event": "websocket:connected", "content-type": encoding or "audio/l16;rate=16000", **params}
            )

    async def send_json(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        assert self._ws is not None
        if isinstance(data, bytes):
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data)

    async def dtmf(self, digit: str) -> None:
        if self.carrier == "vonage":
            await self.send_json({"event": "websocket:dtmf", "digit": digit, "duration": 260})
        elif self.carrier == "telnyx":
            await self.send_json({"event": "dtmf", "stream_id": "s", "dtmf": {"digit": digit}})
        else:
            await self.send_json({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}})

    async def speak(self, ulaw: bytes, silence_after_ms: int = 0) -> None:
        """Replay mu-law audio (plus trailing silence) in real-time 20 ms frames, with jitter and loss."""
        ulaw = ulaw + mulaw.encode(bytes(silence_after_ms * 16))
        rng = random.Random(self.seed)
        started = time.monotonic()
        last = started
        self.speech_started_at = started
        # The end of speech: the last loud sample (espeak-ng's own trailing pause is not speech).
        loud = np.flatnonzero(np.abs(np.frombuffer(mulaw.decode(ulaw), dtype="<i2")) > 500)
        voiced_until = int(loud[-1]) + 1 if len(loud) else 0
        for index in range(0, len(ulaw) // 160):
            due = started + index * FRAME_SECONDS + rng.uniform(0, self.jitter_ms / 1000)
            last = max(last, due)  # jitter delays frames; a WebSocket keeps their order
            delay = last - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # real-time pacing of the replay, not synchronisation
            chunk = ulaw[index * 160 : (index + 1) * 160]
            if index * 160 < voiced_until:
                self.last_voice_sent_at = time.monotonic()
            if rng.random() < self.loss:
                continue
            await self._send_media(chunk, index)

    async def _send_media(self, chunk: bytes, index: int) -> None:
        if self.carrier == "vonage":
            pcm8 = np.frombuffer(mulaw.decode(chunk), dtype="<i2")
            pcm16 = np.asarray(soxr.resample(pcm8, 8000, 16000), dtype="<i2").tobytes()
            await self.send_raw(pcm16[:640].ljust(640, b"\0"))
            return
        media = {"track": "inbound", "chunk": str(index + 1), "timestamp": str(index * 20)}
        media["payload"] = base64.b64encode(chunk).decode()
        key = {"twilio": "streamSid", "telnyx": "stream_id", "plivo": "streamId"}[self.carrier]
        await self.send_json({"event": "media", key: "MZ", "media": media})

    async def stop(self) -> None:
        if self.carrier == "vonage":
            await self.hang_up()
            return
        await self.send_json({"event": "stop", "stop": {"accountSid": "AC1", "callSid": "CA1"}})

    async def hang_up(self) -> None:
        """The carrier goes away (no stop): the WebSocket closes."""
        if self._ws is not None:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.closed.set()

    # ------------------------------------------------------------------ agent audio

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._media(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self._control(json.loads(msg.data))
                else:
                    if msg.type == aiohttp.WSMsgType.CLOSE:
                        self.close_reason = msg.extra or ""
                    break
        finally:
            self.close_code = self._ws.close_code
            self.closed.set()

    def _control(self, message: dict[str, Any]) -> None:
        kind = message.get("event") or message.get("action")
        if kind in ("media", "playAudio"):
            self._media(mulaw.decode(base64.b64decode(message["media"]["payload"])))
        elif kind in ("mark", "checkpoint", "notify"):
            name = message.get("name") or (message.get("mark") or message.get("payload") or {})["name"]
            self._buffer.append(_Mark(name))
            self._wake.set()
        elif kind in ("clear", "clearAudio"):
            self.clears.append(time.monotonic())
            pending = [item for item in self._buffer if isinstance(item, _Mark)]
            self._buffer.clear()
            for mark in pending:  # carriers answer every pending mark when they drop their buffer
                self._tasks.append(asyncio.create_task(self._ack(mark.name)))
        elif kind == "error":
            self.errors.append(message["error"])

    def _media(self, pcm: bytes) -> None:
        now = time.monotonic()
        if self.first_media_at is None:
            self.first_media_at = now
        self.received_frames += 1
        tail = next((item for item in reversed(self._buffer) if isinstance(item, _Frame)), None)
        play_at = now + self.playout_ms / 1000
        if tail is not None:
            play_at = max(play_at, tail.play_at + FRAME_SECONDS)
        self._buffer.append(_Frame(pcm, play_at))
        self._wake.set()

    async def _play(self) -> None:
        while True:
            if not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._buffer[0]
            if isinstance(head, _Frame):
                delay = head.play_at - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)  # a clear may come first
                    continue
                self._buffer.popleft()
                self.played += head.pcm
            else:
                self._buffer.popleft()
                await self._ack(head.name)

    async def _ack(self, name: str) -> None:
        self.marks_acked.append(name)
        with contextlib.suppress(ConnectionResetError):
            await self._send_ack(name)

    async def _send_ack(self, name: str) -> None:
        if self.carrier == "plivo":
            await self.send_json({"event": "playedStream", "streamId": "MZ", "name": name})
        elif self.carrier == "vonage":
            await self.send_json({"event": "websocket:notify", "payload": {"name": name}})
        elif self.carrier == "telnyx":
            await self.send_json({"event": "mark", "stream_id": "MZ", "mark": {"name": name}})
        else:
            await self.send_json({"event": "mark", "streamSid": "MZ", "mark": {"name": name}})


def ws_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
