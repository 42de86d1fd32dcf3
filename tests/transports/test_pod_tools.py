"""A real pod's tool layer: it lists its MCP server at start-up and keeps idempotency in its Redis, so
a booking asked twice in a gRPC call reaches the MCP server once."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import REGISTRY

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.runtime import Pod
from agent_pod.settings import PodSettings
from agent_pod.tools.idempotency import RedisIdempotencyStore
from tests.support.mcp import McpToolServer
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer

SLOT_RULE = {
    "match": "slot",
    "tool": "book_slot",
    "arguments": {"time": "19:00", "people": 2},
    "then": "Your slot is {result[confirmation]}.",
}


def replays() -> float:
    return REGISTRY.get_sample_value("voicefleet_tool_idempotent_replays_total", {"tool": "book_slot"}) or 0.0


async def test_a_pod_books_through_its_mcp_server_once_per_call(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "resume.key"
    key_file.write_bytes(b"tools-test-key-0123456789abcdef")
    async with McpToolServer() as mcp:
        config = synthetic_config(
            agent="tools-pod",
            mcpServers=[{"name": "shop", "url": mcp.url}],
            pipeline={"llm": {"options": {"rules": json.dumps([SLOT_RULE])}}},
        )
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name="tools-0",
            redis_url=redis_server.url,
            resume_key_file=key_file,
            log_format="text",
        )
        pod = Pod(settings, config, pod_ports())
        await pod.start()
        try:
            assert pod.tool_platform is not None and isinstance(
                pod.tool_platform.store, RedisIdempotencyStore
            )
            assert "book_slot" in pod.tool_platform.mcp.tools
            # Its terminal states are exported at 0 from start-up, like those of HTTP tools.
            labels = {"tool": "opening_hours", "state": "succeeded"}
            assert REGISTRY.get_sample_value("voicefleet_tool_calls_total", labels) == 0.0
            before = replays()
            async with GrpcCaller(pod.grpc_address) as call:
                call.send_text("a slot for two please")
                await call.recorder.wait(lambda s: "Your slot is MCP-19:00." in s.agent_texts, 20)
                call.send_text("that same slot again please")
                summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= 2, 20)
                assert summary.agent_texts[-1] == "Your slot is MCP-19:00."
                await call.end()
            assert mcp.bookings == [{"time": "19:00", "people": 2}]
            assert replays() == before + 1
        finally:
            await pod.stop()
