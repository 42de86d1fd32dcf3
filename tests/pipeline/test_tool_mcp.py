"""MCP servers as a tool source: a real MCP server (the SDK's MCPServer over Streamable HTTP on loopback)
and full turns where the scripted LLM calls its tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent_pod.config import McpServerSpec
from agent_pod.tools.mcp_source import McpCatalog
from agent_pod.tools.platform import ToolPlatform
from tests.pipeline.harness import Harness, make_config
from tests.support.mcp import McpToolServer
from tests.support.net import free_port

SLOT_RULE = {
    "match": "slot",
    "say": "One moment.",
    "tool": "book_slot",
    "arguments": {"time": "19:00", "people": 2},
    "then": "Your slot is {result[confirmation]}.",
}


async def mcp_platform(*servers: McpServerSpec) -> ToolPlatform:
    platform = ToolPlatform(mcp=McpCatalog(list(servers)))
    await platform.mcp.start()
    return platform


async def until(predicate: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_turn_calls_an_mcp_tool_with_its_input_schema() -> None:
    async with McpToolServer() as server:
        platform = await mcp_platform(McpServerSpec(name="shop", url=server.url))
        try:
            listed = platform.mcp.tools
            assert sorted(listed) == ["book_slot", "opening_hours", "refuse"]
            schema = listed["book_slot"].spec.parameters
            assert (
                schema["required"] == ["time", "people"]
                and schema["properties"]["people"]["type"] == "integer"
            )
            assert (
                listed["book_slot"].spec.has_side_effects
                and not listed["opening_hours"].spec.has_side_effects
            )
            async with Harness(make_config(rules=[SLOT_RULE]), tool_platform=platform) as h:
                assert "book_slot" in [t.name for t in h.session._tools.offered()]
                h.session.push_text("a slot for two please")
                await h.drain_agent()
                assert server.bookings == [{"time": "19:00", "people": 2}]
                assert h.of_type("agent_text")[-1].text == "One moment. Your slot is MCP-19:00."
                [record] = h.session.tool_audit
                assert record.source == "mcp" and record.outcome == "succeeded" and record.attempts == 1
                assert record.idempotency_key.startswith("vf1-")
                # The same booking again in this call: replayed from the store, the server sees nothing new.
                h.session.push_text("book that slot again")
                await h.drain_agent()
                assert len(server.bookings) == 1 and h.session.tool_audit[-1].outcome == "replayed"
        finally:
            await platform.mcp.aclose()


async def test_mcp_arguments_are_validated_and_tool_errors_are_not_retried() -> None:
    rules = [
        {"match": "bad", "tool": "book_slot", "arguments": {"time": "19:00", "people": "two"}},
        {"match": "refuse", "tool": "refuse", "arguments": {"reason": "closed"}},
    ]
    async with McpToolServer() as server:
        platform = await mcp_platform(
            McpServerSpec(name="shop", url=server.url, retries=2, allow_tools=["book_slot", "refuse"])
        )
        try:
            assert sorted(platform.mcp.tools) == ["book_slot", "refuse"]  # allowTools
            async with Harness(make_config(rules=rules), tool_platform=platform) as h:
                h.session.push_text("bad booking")
                await h.drain_agent()
                assert server.bookings == []
                invalid = [e for e in h.of_type("tool") if e.state == "invalid_arguments"]
                assert invalid and "people" in invalid[0].error
                h.session.push_text("refuse it")
                await h.drain_agent()
                failed = [r for r in h.session.tool_audit if r.tool == "refuse"]
                assert [(r.outcome, r.attempts) for r in failed] == [("failed", 1)]
                assert "Error executing tool refuse" in failed[0].error
        finally:
            await platform.mcp.aclose()


async def test_a_pod_whose_mcp_server_is_down_serves_calls_and_picks_the_tools_up_later() -> None:
    port = free_port()
    spec = McpServerSpec(name="shop", url=f"http://127.0.0.1:{port}/mcp")
    platform = await mcp_platform(spec)
    server = McpToolServer()
    try:
        assert platform.mcp.tools == {} and "shop" in platform.mcp.errors
        async with Harness(make_config(rules=[SLOT_RULE]), tool_platform=platform) as h:
            h.session.push_text("a slot for two please")
            await h.drain_agent()
            assert h.of_type("agent_text")[-1].text == "Sorry, I cannot use book_slot right now."
            await server.start(port)
            await until(lambda: "book_slot" in platform.mcp.tools)
            assert "shop" not in platform.mcp.errors
            h.session.push_text("a slot for two now")
            await h.drain_agent()
            assert server.bookings == [{"time": "19:00", "people": 2}]
            assert json.loads(h.of_type("tool")[-1].result_json)["confirmation"] == "MCP-19:00"
    finally:
        await platform.mcp.aclose()
        await server.stop()


async def test_the_kept_mcp_session_reconnects_after_a_server_restart() -> None:
    server = McpToolServer()
    await server.start()
    platform = await mcp_platform(McpServerSpec(name="shop", url=server.url, retries=1))
    try:
        rules = [{**SLOT_RULE, "match": "slot", "arguments": {"time": "18:00", "people": 2}}]
        rules.append({**SLOT_RULE, "match": "later", "arguments": {"time": "21:00", "people": 2}})
        async with Harness(make_config(rules=rules), tool_platform=platform) as h:
            h.session.push_text("a slot please")
            await h.drain_agent()
            await server.stop()
            await server.start(server.port)  # a new server process: the kept session is gone with it
            h.session.push_text("later please")
            await h.drain_agent()
            assert [b["time"] for b in server.bookings] == ["18:00", "21:00"]
            # Whether the broken session was noticed before the call (reconnect) or by it (retry) is a race.
            assert [r.outcome for r in h.session.tool_audit] == ["succeeded", "succeeded"]
            assert h.session.tool_audit[1].attempts in (1, 2)
            assert h.of_type("agent_text")[-1].text.endswith("Your slot is MCP-21:00.")
    finally:
        await platform.mcp.aclose()
        await server.stop()


async def test_an_mcp_confirm_tool_runs_only_after_the_callers_yes() -> None:
    async with McpToolServer() as server:
        platform = await mcp_platform(McpServerSpec(name="shop", url=server.url, confirm_tools=["book_slot"]))
        try:
            rule = {**SLOT_RULE, "then": "{result}"}
            async with Harness(make_config(rules=[rule]), tool_platform=platform) as h:
                h.session.push_text("a slot for two please")
                await h.drain_agent()
                assert server.bookings == []
                assert h.session.tool_audit[-1].outcome == "awaiting_confirmation"
                h.session.push_text("yes go ahead")
                await h.drain_agent()
                assert server.bookings == [{"time": "19:00", "people": 2}]
                assert (
                    h.session.tool_audit[-1].source == "mcp"
                    and h.session.tool_audit[-1].outcome == "succeeded"
                )
        finally:
            await platform.mcp.aclose()
