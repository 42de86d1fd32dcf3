"""A real local HTTP tool server (aiohttp) that records what it receives."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port


@dataclass
class Seen:
    path: str
    method: str
    body: Any
    query: dict[str, str]
    headers: dict[str, str]
    disconnected: bool = False


@dataclass
class ToolServer:
    """Routes: /book (echo a confirmation), /flaky (500 for the first ``fail_first`` calls),
    /hang (never answers until released), /gate (waits for ``gate`` then answers 500),
    /stall_first (the first call never answers until released, later ones answer at once),
    /overlap (answers once ``overlap_goal`` requests are in flight together, or ``release``)."""

    fail_first: int = 1
    seen: list[Seen] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    host: str = "127.0.0.1"  # the real node's pods reach a server on the node's bridge address
    _runner: web.AppRunner | None = None
    _flaky_calls: int = 0
    overlap_goal: int = 2
    in_flight: int = 0
    max_in_flight: int = 0
    _in_flight_changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _record(self, request: web.Request) -> Seen:
        body: Any = None
        if request.can_read_body:
            raw = await request.text()
            body = json.loads(raw) if raw else None
        seen = Seen(request.path, request.method, body, dict(request.query), dict(request.headers))
        self.seen.append(seen)
        return seen

    async def _book(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        args = seen.body if seen.body is not None else seen.query
        return web.json_response(
            {"confirmation": "BK-" + str(args.get("time", "?")), "people": args.get("people")}
        )

    async def _flaky(self, request: web.Request) -> web.Response:
        await self._record(request)
        self._flaky_calls += 1
        if self._flaky_calls <= self.fail_first:
            return web.json_response({"error": "temporarily broken"}, status=500)
        return web.json_response({"confirmation": "OK-FLAKY"})

    async def _wait(self, request: web.Request, event: asyncio.Event, status: int) -> web.Response:
        seen = await self._record(request)
        try:
            await event.wait()
        except asyncio.CancelledError:
            seen.disconnected = True  # aiohttp cancels the handler when the client goes away
            raise
        return web.json_response({"late": True}, status=status)

    async def _hang(self, request: web.Request) -> web.Response:
        return await self._wait(request, self.release, 200)

    async def _gate(self, request: web.Request) -> web.Response:
        return await self._wait(request, self.gate, 500)

    async def _stall_first(self, request: web.Request) -> web.Response:
        if not self.calls("/stall_first"):
            return await self._wait(request, self.release, 200)
        seen = await self._record(request)
        body = seen.body or {}
        return web.json_response({"confirmation": "BK-" + str(body.get("time", "?"))})

    async def _overlap(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        async with self._in_flight_changed:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._in_flight_changed.notify_all()
            try:
                await self._in_flight_changed.wait_for(
                    lambda: self.max_in_flight >= self.overlap_goal or self.release.is_set()
                )
            finally:
                self.in_flight -= 1
        body = seen.body or {}
        return web.json_response({"slot": body.get("time"), "overlapped": self.max_in_flight})

    async def __aenter__(self) -> ToolServer:
        app = web.Application()
        app.router.add_route("*", "/book", self._book)
        app.router.add_route("*", "/flaky", self._flaky)
        app.router.add_route("*", "/hang", self._hang)
        app.router.add_route("*", "/gate", self._gate)
        app.router.add_route("*", "/stall_first", self._stall_first)
        app.router.add_route("*", "/overlap", self._overlap)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        self.gate.set()
        assert self._runner is not None
        await self._runner.cleanup()


def tool(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A ToolSpec (wire form) for ``book``-like calls: time (HH:MM) and people (1..12)."""
    spec: dict[str, Any] = {
        "name": name,
        "description": f"{name} a table",
        "parameters": {
            "type": "object",
            "properties": {
                "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                "people": {"type": "integer", "minimum": 1, "maximum": 12},
            },
            "required": ["time", "people"],
            "additionalProperties": False,
        },
        "endpoint": {"url": url},
    }
    spec.update(extra)
    return spec
