"""A real MCP server (the SDK's MCPServer, Streamable HTTP under uvicorn) on a free loopback port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from .net import free_port
from .wait import Timeout


@dataclass
class McpToolServer:
    """Tools: ``book_slot`` (counts its calls in ``bookings``), ``opening_hours`` (read-only) and
    ``refuse`` (always answers with a tool error)."""

    bookings: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _app(self) -> Any:
        mcp = MCPServer("voicefleet-test")

        @mcp.tool(description="Book a slot for a number of people.")
        def book_slot(time: str, people: int) -> dict[str, Any]:
            self.bookings.append({"time": time, "people": people})
            return {"confirmation": f"MCP-{time}", "people": people}

        @mcp.tool(description="Opening hours of a day.", annotations=ToolAnnotations(read_only_hint=True))
        def opening_hours(day: str) -> str:
            return f"{day}: 9 to 17"

        @mcp.tool(description="Always fails.")
        def refuse(reason: str) -> str:
            raise ValueError(f"refused: {reason}")

        return mcp.streamable_http_app()

    async def start(self, port: int | None = None) -> None:
        self.port = port or self.port or free_port()
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        deadline = asyncio.get_running_loop().time() + 20
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise Timeout("the MCP server did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 20)
            self._server = self._task = None

    async def __aenter__(self) -> McpToolServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
