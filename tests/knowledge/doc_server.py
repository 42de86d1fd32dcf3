"""A document server on loopback for HTTP sources: documents with an ETag and/or Last-Modified that answer
conditional requests with 304, a page that never answers, and bodies of any size streamed from a
generator (a 200 MB body is produced on the fly, never stored)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDictProxy

PIECE = b"lorem ipsum " * 5461  # ~64 KiB of text


@dataclass
class Page:
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    etag: str = ""
    last_modified: str = ""
    required_headers: dict[str, str] = field(default_factory=dict)


class DocServer:
    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[tuple[str, CIMultiDictProxy[str]]] = []
        self.streamed_bytes = 0  # of the last streamed body, as far as the client let it go
        self.stream_ended = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/slow", self._slow)
        self.app.router.add_get("/stream/{size}", self._stream)
        self.app.router.add_get("/{path:.*}", self._page)
        self._runner: web.AppRunner | None = None
        self.origin = ""

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers))
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=404)
        if any(request.headers.get(k) != v for k, v in page.required_headers.items()):
            return web.Response(status=401)
        headers = {"Content-Type": page.content_type}
        if page.etag:
            headers["ETag"] = page.etag
        if page.last_modified:
            headers["Last-Modified"] = page.last_modified
        if (page.etag and request.headers.get("If-None-Match") == page.etag) or (
            page.last_modified and request.headers.get("If-Modified-Since") == page.last_modified
        ):
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        return web.Response(body=page.body, headers=headers)

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers))
        await asyncio.Event().wait()  # never answers; the client's timeout ends it
        raise AssertionError("unreachable")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """``size`` bytes of text; with ?length=1 announced in Content-Length, else chunked."""
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if request.query.get("length"):
            response.content_length = size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        self.streamed_bytes = 0
        try:
            while self.streamed_bytes < size:
                piece = PIECE[: size - self.streamed_bytes]
                await response.write(piece)
                self.streamed_bytes += len(piece)
            await response.write_eof()
        finally:
            self.stream_ended.set()
        return response
