"""MCP servers as a tool source, through the official SDK over Streamable HTTP.

The pod lists each server's tools at start-up (``McpCatalog.start``); a server
that is down is retried in the background with backoff while calls go on
without its tools. Calls share one kept-open MCP client session per server
(``McpConnection``); a call that fails on the transport drops it and the next
call connects again (the runner's retries cover a server restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import RequestParamsMeta, TextContent

from ..config import HTTPEndpoint, McpServerSpec, ToolSpec
from ..providers.credentials import resolve_credential
from ..tool_metrics import MCP_LIST_FAILURES_TOTAL

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS = 10.0
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
IDEMPOTENCY_META_KEY = "io.voicefleet/idempotency-key"
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class McpToolError(Exception):
    """The server answered the call with ``isError``: the tool rejected it (not retried)."""


@dataclass(frozen=True)
class McpTool:
    server: McpServerSpec
    spec: ToolSpec  # what the LLM is offered, with the server's timeouts, breaker and limits
    remote_name: str
    connection: McpConnection


def server_headers(server: McpServerSpec) -> dict[str, str]:
    ref = server.headers_secret_ref
    if ref is None:
        return {}
    raw = resolve_credential(ref, "")
    if raw is None:
        raise ValueError(f"MCP server {server.name}: header secret {ref.name}/{ref.key} is not mounted")
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"MCP server {server.name}: header secret {ref.name}/{ref.key} is not JSON") from exc
    if not isinstance(extra, dict):
        raise ValueError(
            f"MCP server {server.name}: header secret {ref.name}/{ref.key} must be a JSON object"
        )
    return {str(k): str(v) for k, v in extra.items()}


@contextlib.asynccontextmanager
async def _connect(server: McpServerSpec) -> AsyncIterator[Client]:
    # A session's event stream stays open: a long read timeout, as the SDK's own client has; calls
    # have their own timeouts.
    async with (
        httpx2.AsyncClient(headers=server_headers(server), timeout=HTTP_TIMEOUT) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        yield client


class McpConnection:
    """One kept-open MCP client session to a server, shared by the pod's calls. A task holds it open
    (the SDK's client must be entered and left in one task); a call that finds it broken drops it."""

    def __init__(self, server: McpServerSpec) -> None:
        self.server = server
        self._ready: asyncio.Future[Client] | None = None
        self._close = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None

    async def client(self) -> Client:
        ready, holder = self._ready, self._holder
        if ready is None or holder is None or holder.done() or (ready.done() and ready.exception()):
            ready = self._ready = asyncio.get_running_loop().create_future()
            self._close = asyncio.Event()
            self._holder = asyncio.create_task(self._hold(ready, self._close), name=f"mcp-{self.server.name}")
        # Shielded: a caller's timeout must not cancel a connection other calls wait for.
        return await asyncio.shield(ready)

    async def _hold(self, ready: asyncio.Future[Client], close: asyncio.Event) -> None:
        try:
            async with _connect(self.server) as client:
                ready.set_result(client)
                await close.wait()
        except Exception as exc:  # connection refused, handshake failed, the session broke
            if not ready.done():
                ready.set_exception(exc)
            log.info("MCP server %s: connection ended: %s: %s", self.server.name, type(exc).__name__, exc)

    def drop(self, client: Client) -> None:
        """``client`` failed on the transport: the next call connects again."""
        ready = self._ready
        if ready is not None and ready.done() and not ready.exception() and ready.result() is client:
            self._close.set()
            self._ready = None

    async def aclose(self) -> None:
        self._close.set()
        if self._holder is not None:
            try:
                async with asyncio.timeout(5):
                    await self._holder
            except TimeoutError:
                self._holder.cancel()


def tool_spec(
    server: McpServerSpec, name: str, description: str, schema: dict[str, Any], read_only: bool
) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=(description or name)[:1024],
        parameters=schema if schema.get("type") == "object" else {"type": "object", "properties": {}},
        # Unused for MCP calls (they go through call_tool); it names where the tool lives.
        endpoint=HTTPEndpoint(url=server.url, method="POST"),
        timeout_seconds=server.timeout_seconds,
        retries=server.retries,
        side_effects=server.side_effects and not read_only,
        confirm=name in server.confirm_tools,
        breaker=server.breaker,
        concurrency=server.concurrency,
    )


async def list_tools(server: McpServerSpec) -> list[McpTool]:
    """The server's tools allowed by ``allowTools`` (all pages)."""
    found: list[McpTool] = []
    connection = McpConnection(server)
    async with _connect(server) as client:
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if server.allow_tools and tool.name not in server.allow_tools:
                    continue
                read_only = bool(tool.annotations and tool.annotations.read_only_hint)
                try:
                    spec = tool_spec(server, tool.name, tool.description or "", tool.input_schema, read_only)
                except ValueError as exc:  # a name or schema the LLM API would refuse
                    log.warning("MCP server %s: tool %r skipped: %s", server.name, tool.name, exc)
                    continue
                found.append(McpTool(server, spec, tool.name, connection))
            cursor = page.next_cursor
            if not cursor:
                return found


async def call_tool(tool: McpTool, args: dict[str, Any], idempotency_key: str) -> str:
    """The call's result as JSON text; McpToolError when the tool answered with an error."""
    # The key rides in the request's _meta: an MCP server that dedupes can read it.
    meta = cast(RequestParamsMeta, {IDEMPOTENCY_META_KEY: idempotency_key}) if idempotency_key else None
    client = await tool.connection.client()
    try:
        result = await client.call_tool(tool.remote_name, args, meta=meta)
    except Exception:
        tool.connection.drop(client)
        raise
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error:
        raise McpToolError(" ".join(texts)[:500] or "the tool reported an error")
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    return json.dumps({"result": texts[0] if len(texts) == 1 else texts})


class McpCatalog:
    """The MCP tools this pod offers: filled at start-up, completed in the background while a server is
    down (its tools appear once it answers)."""

    def __init__(self, servers: list[McpServerSpec]) -> None:
        self.servers = servers
        self.tools: dict[str, McpTool] = {}
        self.errors: dict[str, str] = {}  # server -> why its tools are missing
        self._tasks: list[asyncio.Task[None]] = []
        self._connections: list[McpConnection] = []

    async def start(self, first_wait_seconds: float = LIST_TIMEOUT_SECONDS) -> None:
        """List every server; returns once each answered or failed once (then keeps retrying)."""
        first = [asyncio.Event() for _ in self.servers]
        self._tasks = [
            asyncio.create_task(self._load(s, done), name=f"mcp-list-{s.name}")
            for s, done in zip(self.servers, first, strict=True)
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(first_wait_seconds):
                await asyncio.gather(*(e.wait() for e in first))

    async def _load(self, server: McpServerSpec, first: asyncio.Event) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                async with asyncio.timeout(LIST_TIMEOUT_SECONDS):
                    tools = await list_tools(server)
            except Exception as exc:  # any failure of a remote server: report it and retry
                why = f"{type(exc).__name__}: {exc}"
                self.errors[server.name] = why
                MCP_LIST_FAILURES_TOTAL.labels(server=server.name).inc()
                log.warning(
                    "MCP server %s (%s): listing tools failed, retry in %g s: %s",
                    server.name,
                    server.url,
                    delay,
                    why,
                )
                first.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            for tool in tools:
                self.tools.setdefault(tool.spec.name, tool)
            if tools:
                self._connections.append(tools[0].connection)
            self.errors.pop(server.name, None)
            log.info("MCP server %s: %d tools", server.name, len(tools))
            first.set()
            return

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in self._connections), return_exceptions=True)
