"""What the local OpenAI and Deepgram servers share: lifecycle on loopback, auth, failure
switches, a log of requests, and streamed responses that notice a client hanging up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class Faults(BaseModel):
    """Failure switches; tests set them directly or through POST /_control/faults."""

    status: int | None = Field(default=None, description="Answer the next requests with this HTTP status.")
    status_count: int = Field(default=1, description="How many requests get `status` before it clears.")
    first_byte_delay: float = Field(default=0.0, description="Seconds before any response starts.")
    chunk_interval: float = Field(default=0.0, description="Pause between streamed chunks.")
    drop_after_chunks: int | None = Field(
        default=None, description="Close the TCP connection after this many streamed chunks."
    )
    corrupt_after_chunks: int | None = Field(
        default=None, description="After this many server-sent events, send one that is not JSON and end."
    )

    def take_status(self) -> int | None:
        status = self.status
        if status is not None:
            self.status_count -= 1
            if self.status_count <= 0:
                self.status = None
                self.status_count = 1
        return status


class Recorded(BaseModel):
    """One request as the server saw it (credentials are only compared, never kept)."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorized: bool
    body: dict[str, Any] = Field(default_factory=dict)
    audio_bytes: int = 0
    control: list[str] = Field(default_factory=list, description="WebSocket control message types, in order.")


class WireServer:
    """Base of the protocol servers: subclasses add their routes in ``routes``."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.faults = Faults()
        self.requests: list[Recorded] = []
        # A streamed response whose client went away before its end; tests wait on it.
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        # When set, a streamed response pauses after its first chunk until the event fires:
        # a client that buffers whole responses never sees that chunk and times out.
        self.gate: asyncio.Event | None = None
        self.app = web.Application()
        self.app.router.add_post("/_control/faults", self._set_faults)
        self.app.router.add_get("/_control/requests", self._get_requests)
        self.routes(self.app)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # handler_cancellation: a client hanging up cancels its handler, as on a real server
        # (the disconnect is what cancellation tests look for); short shutdown for quick teardown.
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host, self.port = host, int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def record(self, request: web.BaseRequest, authorized: bool, **fields: Any) -> Recorded:
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        entry = Recorded(
            method=request.method, path=request.path, query=query, authorized=authorized, **fields
        )
        self.requests.append(entry)
        return entry

    def last(self, path: str) -> Recorded:
        return next(r for r in reversed(self.requests) if r.path == path)

    async def delay_first_byte(self) -> None:
        if self.faults.first_byte_delay > 0:
            await asyncio.sleep(self.faults.first_byte_delay)

    async def stream(
        self, request: web.Request, response: web.StreamResponse, chunks: Iterable[bytes]
    ) -> web.StreamResponse:
        """Write ``chunks`` with the configured pacing and faults; a client that hangs up is counted."""
        await response.prepare(request)
        faults = self.faults
        try:
            for n, chunk in enumerate(chunks):
                if faults.drop_after_chunks is not None and n >= faults.drop_after_chunks:
                    self._drop(request)
                    return response
                if faults.corrupt_after_chunks is not None and n >= faults.corrupt_after_chunks:
                    await response.write(b"data: {this is not json\n\n")
                    break
                if n and faults.chunk_interval > 0:
                    await asyncio.sleep(faults.chunk_interval)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client went away")
                await response.write(chunk)
                if n == 0 and self.gate is not None:
                    await self.gate.wait()
            await response.write_eof()
        except ConnectionResetError:
            self.count_disconnect(request)
        except asyncio.CancelledError:  # handler cancelled: the client closed the connection
            self.count_disconnect(request)
            raise
        return response

    def count_disconnect(self, request: web.BaseRequest) -> None:
        self.disconnects += 1
        self.disconnected.set()
        log.info("client disconnected mid-response from %s", request.path)

    @staticmethod
    def _drop(request: web.Request) -> None:
        """Cut the connection mid-body, like a crashed upstream (the chunked body never ends)."""
        if request.transport is not None:
            request.transport.abort()

    async def _set_faults(self, request: web.Request) -> web.Response:
        self.faults = Faults.model_validate(await request.json())
        return web.json_response(self.faults.model_dump())

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response([r.model_dump() for r in self.requests])
