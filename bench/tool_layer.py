"""What the tool orchestration layer adds to a tool call, against real local servers.

A ToolRunner executes calls one after another against an aiohttp tool server
that answers at once, so the numbers are the layer's own cost plus one loopback
HTTP round trip:
  - direct: the bare HTTP request (the floor);
  - GET (no side effects): validation-free execute through the breaker and the concurrency slot;
  - POST, pod memory store: + the idempotency key and run-once in memory;
  - POST, Redis store: + run-once in a real redis-server (GET, SET NX lock, SET result, unlock);
  - replay, Redis: the same call again, answered from Redis without sending;
  - MCP call: a real MCPServer over Streamable HTTP, through the pod's kept-open MCP session.

    python -m bench.tool_layer [--calls 300] [--mcp-calls 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agent_pod.config import McpServerSpec, ToolSpec
from agent_pod.conversation import ToolCall
from agent_pod.pipeline.tools import ToolRunner
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import RedisConnection, connect
from agent_pod.tools.mcp_source import McpCatalog
from agent_pod.tools.platform import ToolPlatform
from bench.report import percentile, print_records, write_json
from tests.support.mcp import McpToolServer
from tests.support.net import free_port
from tests.support.redis import RedisServer


async def _tool_server() -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        return web.json_response({"confirmation": "BK-1"})

    app = web.Application()
    app.router.add_route("*", "/book", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/book"


def _spec(url: str, method: str) -> ToolSpec:
    return ToolSpec.model_validate(
        {
            "name": "book",
            "description": "Book.",
            "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "endpoint": {"url": url, "method": method},
        }
    )


async def _timed(calls: int, one: Callable[[int], Awaitable[object]]) -> dict[str, Any]:
    await one(-1)  # warm-up: connections, first store round trip
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await one(i)
        samples.append(time.perf_counter() - started)
    return {
        "calls": calls,
        "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
    }


async def _runner_mode(spec: ToolSpec, platform: ToolPlatform, calls: int, same_args: bool) -> dict[str, Any]:
    runner = ToolRunner([spec], "bench-session", lambda e: None, platform=platform)

    async def one(i: int) -> object:
        args = {"n": 0 if same_args else i}
        outcome = await runner.execute(
            ToolCall(id=f"c{i}", name="book", arguments=json.dumps(args)), args, bool
        )
        assert outcome.state == "succeeded", outcome
        return outcome

    try:
        return await _timed(calls, one)
    finally:
        await runner.aclose()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    redis = RedisServer()
    redis.start()
    runner, url = await _tool_server()
    client = connect(RedisConnection(url=redis.url))
    rows: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def direct(i: int) -> object:
                async with http.post(url, json={"n": i}) as resp:
                    return await resp.text()

            rows.append({"mode": "direct HTTP (floor)", **await _timed(args.calls, direct)})
        rows.append(
            {
                "mode": "GET, no side effects",
                **await _runner_mode(_spec(url, "GET"), ToolPlatform(), args.calls, False),
            }
        )
        rows.append(
            {
                "mode": "POST, pod memory store",
                **await _runner_mode(_spec(url, "POST"), ToolPlatform(), args.calls, False),
            }
        )
        redis_platform = ToolPlatform.with_redis(client, AgentKeys("bench", "tools"), [])
        rows.append(
            {
                "mode": "POST, Redis store",
                **await _runner_mode(_spec(url, "POST"), redis_platform, args.calls, False),
            }
        )
        rows.append(
            {
                "mode": "replay from Redis",
                **await _runner_mode(_spec(url, "POST"), redis_platform, args.calls, True),
            }
        )
        async with McpToolServer() as mcp:
            platform = ToolPlatform(
                mcp=McpCatalog([McpServerSpec(name="bench", url=mcp.url, side_effects=False)])
            )
            await platform.mcp.start()
            try:
                book = platform.mcp.tools["book_slot"].spec
                mcp_runner = ToolRunner([], "bench-session", lambda e: None, platform=platform)

                async def mcp_call(i: int) -> object:
                    call_args = {"time": "19:00", "people": 2}
                    call = ToolCall(id=f"m{i}", name=book.name, arguments=json.dumps(call_args))
                    outcome = await mcp_runner.execute(call, call_args, bool)
                    assert outcome.state == "succeeded", outcome
                    return outcome

                rows.append(
                    {"mode": "MCP call (kept-open session)", **await _timed(args.mcp_calls, mcp_call)}
                )
            finally:
                await platform.mcp.aclose()
    finally:
        await client.aclose()
        await runner.cleanup()
        redis.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per HTTP mode")
    parser.add_argument("--mcp-calls", type=int, default=100, help="sequential MCP calls")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    # The MCP SDK's server turns INFO logging on: keep per-call lines (audit, HTTP) out of the table.
    for noisy in ("voicefleet.audit", "httpx2", "httpx", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    rows = asyncio.run(run(args))
    print_records(rows)
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
