"""A local server speaking enough of Deepgram's API for the real ``deepgram-sdk``.

WebSocket /v1/listen: query parameters as the SDK sends them, binary linear16
frames in, JSON ``Results`` out (interim every ``interim_every`` seconds of audio
when interim_results=true; final on Finalize, on CloseStream, and every
``segment_seconds`` of audio when set, like endpointing), KeepAlive, Metadata
then a normal close on CloseStream, and the NET-0001 close after
``idle_timeout`` seconds without any message. POST /v1/speak streams linear16
from espeak-ng (a WAV header unless container=none). ``Authorization: Token
<key>`` is checked on both. Run standalone with
``python -m tests.wire.deepgram_server --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from .base import Recorded, WireServer
from .speech import Recognizer, Segment, espeak_pcm

DEFAULT_KEY = "dg-test-local"


def results_message(
    transcript: str,
    start: float,
    duration: float,
    *,
    is_final: bool,
    speech_final: bool = False,
    from_finalize: bool = False,
    request_id: str,
    model: str,
) -> dict[str, Any]:
    words = transcript.split()
    step = duration / len(words) if words else 0.0
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(duration, 3),
        "start": round(start, 3),
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {
            "alternatives": [
                {
                    "transcript": transcript,
                    "confidence": 0.9 if words else 0.0,
                    "words": [
                        {
                            "word": w,
                            "start": round(start + i * step, 3),
                            "end": round(start + (i + 1) * step, 3),
                            "confidence": 0.9,
                        }
                        for i, w in enumerate(words)
                    ],
                }
            ]
        },
        "metadata": {
            "request_id": request_id,
            "model_info": {"name": model, "version": "local", "arch": "local"},
            "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, model)),
        },
    }


def wav_header(n_bytes: int, sample_rate: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + n_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", n_bytes)
    )


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}
    return web.json_response(body, status=status)


class _Listen:
    """One /v1/listen connection: the audio timeline and the segment being recognized."""

    def __init__(
        self, server: DeepgramServer, ws: web.WebSocketResponse, entry: Recorded, query: Any
    ) -> None:
        self.server = server
        self.ws = ws
        self.entry = entry
        self.rate = int(query.get("sample_rate", "16000"))
        self.model = query.get("model", "base")
        self.interim = query.get("interim_results") == "true"
        self.request_id = str(uuid.uuid4())
        self.offset = 0.0  # audio seconds before the current segment
        self.since_interim = 0.0
        self.sent = 0
        self.segment: Segment = server.recognizer.segment(self.rate)

    async def send(self, message: dict[str, Any]) -> None:
        limit = self.server.faults.drop_after_chunks
        if limit is not None and self.sent >= limit:
            raise ConnectionAbortedError("injected drop")
        await self.ws.send_str(json.dumps(message))
        self.sent += 1

    def _results(self, text: str, **flags: bool) -> dict[str, Any]:
        return results_message(
            text, self.offset, self.segment.seconds, request_id=self.request_id, model=self.model, **flags
        )

    async def audio(self, data: bytes) -> None:
        self.entry.audio_bytes += len(data)
        self.segment.feed(data)
        self.since_interim += len(data) / 2 / self.rate
        if self.interim and self.since_interim >= self.server.interim_every:
            self.since_interim = 0.0
            await self.send(self._results(await self.segment.partial(), is_final=False))
        limit = self.server.segment_seconds
        if limit is not None and self.segment.seconds >= limit:
            await self.finish_segment(speech_final=False, from_finalize=False)

    async def finish_segment(self, *, speech_final: bool, from_finalize: bool) -> None:
        """Send the segment's final result (nothing when it holds no audio, as Deepgram does)."""
        if self.segment.seconds == 0:
            return
        text = await self.segment.final()
        await self.send(
            self._results(text, is_final=True, speech_final=speech_final, from_finalize=from_finalize)
        )
        self.offset += self.segment.seconds
        self.since_interim = 0.0
        self.segment = self.server.recognizer.segment(self.rate)

    async def close_stream(self) -> None:
        await self.finish_segment(speech_final=True, from_finalize=False)
        await self.send(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": hashlib.sha256(b"").hexdigest(),
                "created": datetime.now(UTC).isoformat(),
                "duration": round(self.offset, 3),
                "channels": 1,
            }
        )
        await self.ws.close(code=1000)


class DeepgramServer(WireServer):
    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        self.recognizer = Recognizer()
        self.interim_every = 0.25  # audio seconds between interim results
        self.segment_seconds: float | None = None
        # Deepgram may leave a Finalize unanswered when little audio is buffered.
        self.answer_finalize = True
        self.idle_timeout = 10.0  # Deepgram closes a socket without audio or messages for 10 s
        self.speech_chunk_bytes = 4800
        self.listens_open = 0
        super().__init__(api_key)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_post("/v1/speak", self._speak)
        app.router.add_post("/_control/transcripts", self._control_transcripts)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "token" and key == self.api_key

    async def _refusal(self, request: web.Request, authorized: bool) -> web.Response | None:
        await self.delay_first_byte()
        if not authorized:
            return _error(401, "INVALID_AUTH", "Invalid credentials.")
        status = self.faults.take_status()
        if status is not None:
            return _error(status, "INTERNAL_SERVER_ERROR", "injected failure")
        if request.query.get("encoding", "linear16") != "linear16":
            return _error(400, "Bad Request", "this local server only handles encoding=linear16")
        return None

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        authorized = self._authorized(request)
        entry = self.record(request, authorized)
        if (refusal := await self._refusal(request, authorized)) is not None:
            return refusal
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        listen = _Listen(self, ws, entry, request.query)
        self.listens_open += 1
        try:
            await self._serve_listen(listen)
        except ConnectionAbortedError:
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            self.count_disconnect(request)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.listens_open -= 1
        return ws

    async def _serve_listen(self, listen: _Listen) -> None:
        ws = listen.ws
        while not ws.closed:
            try:
                msg = await ws.receive(timeout=self.idle_timeout)
            except TimeoutError:
                listen.entry.control.append("timeout")
                await ws.close(code=1011, message=b"NET-0001")
                return
            if msg.type == WSMsgType.BINARY:
                await listen.audio(msg.data)
            elif msg.type == WSMsgType.TEXT:
                kind = str(json.loads(msg.data).get("type", ""))
                listen.entry.control.append(kind)
                if kind == "Finalize" and self.answer_finalize:
                    await listen.finish_segment(speech_final=True, from_finalize=True)
                elif kind == "CloseStream":
                    await listen.close_stream()
                    return
            else:  # close, closing or error frames: the client is gone
                if msg.type != WSMsgType.CLOSE:
                    raise ConnectionResetError("listen socket failed")
                listen.entry.control.append("close")
                return

    async def _speak(self, request: web.Request) -> web.StreamResponse:
        authorized = self._authorized(request)
        body = await request.json()
        self.record(request, authorized, body=body)
        if (refusal := await self._refusal(request, authorized)) is not None:
            return refusal
        if not body.get("text"):
            return _error(400, "Bad Request", "text is required")
        rate = int(request.query.get("sample_rate", "24000"))
        pcm = await espeak_pcm(body["text"], rate)
        if request.query.get("container", "wav") != "none":
            pcm = wav_header(len(pcm), rate) + pcm
        size = self.speech_chunk_bytes
        chunks = (pcm[i : i + size] for i in range(0, len(pcm), size))
        headers = {"Content-Type": "audio/l16", "dg-request-id": str(uuid.uuid4())}
        return await self.stream(request, web.StreamResponse(headers=headers), chunks)

    async def _control_transcripts(self, request: web.Request) -> web.Response:
        self.recognizer.script(*[str(t) for t in await request.json()])
        return web.json_response({"queued": len(self.recognizer.scripted)})


async def _serve(host: str, port: int, api_key: str) -> None:
    server = DeepgramServer(api_key)
    await server.start(host, port)
    print(f"Deepgram wire server on {server.origin}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
