"""The tool orchestration layer against real servers: a real Redis, the HTTP tool server counting the
requests it receives, a real MCP server, and full turns of the scripted LLM (or the OpenAI wire server)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import ToolSpec
from agent_pod.conversation import ToolCall
from agent_pod.pipeline.events import ToolEvent
from agent_pod.pipeline.tools import ToolRunner
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import RedisConnection, connect
from agent_pod.tools.platform import ToolPlatform
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.test_tools import assert_paired
from tests.pipeline.toolserver import ToolServer, tool
from tests.support.redis import RedisServer

BOOK = {"time": "19:00", "people": 2}
BOOK_RULE = {
    "match": "book",
    "say": "Let me book that.",
    "tool": "book_table",
    "arguments": BOOK,
    "then": "You are booked, confirmation {result[confirmation]}.",
}


@pytest.fixture
async def pod_platforms(redis_server: RedisServer) -> AsyncIterator[Any]:
    """``make()`` builds the tool platform of a new pod of one agent, all on the same real Redis."""
    agent = f"tools-{uuid.uuid4().hex[:8]}"
    clients = []

    def make() -> ToolPlatform:
        client = connect(RedisConnection(url=redis_server.url))
        clients.append(client)
        return ToolPlatform.with_redis(client, AgentKeys("default", agent), [])

    yield make
    for client in clients:
        await client.aclose()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def keys_seen(server: ToolServer, path: str) -> list[str]:
    return [s.headers.get("Idempotency-Key", "") for s in server.calls(path)]


async def test_retry_after_5xx_sends_one_key_and_records_the_audit(pod_platforms: Any) -> None:
    async with ToolServer(fail_first=1) as server:
        rule = {**BOOK_RULE, "then": "Booked: {result[confirmation]}."}
        cfg = make_config(rules=[rule], tools=[tool("book_table", server.url("/flaky"), retries=1)])
        async with Harness(cfg, tool_platform=pod_platforms()) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            keys = keys_seen(server, "/flaky")
            assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("vf1-")
            [record] = h.session.tool_audit
            assert record.outcome == "succeeded" and record.attempts == 2
            assert record.idempotency_key == keys[0] and record.tool == "book_table"
            assert record.session_id == "test-session" and record.agent == "local" and record.node == ""
            assert record.turn_id == "turn-1" and len(record.arguments_sha256) == 64
            assert h.of_type("agent_text")[-1].text.endswith("Booked: OK-FLAKY.")


async def test_retry_after_timeout_keeps_the_key(pod_platforms: Any) -> None:
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/stall_first"), retries=1, timeoutSeconds=0.5)
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec]), tool_platform=pod_platforms()) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            keys = keys_seen(server, "/stall_first")
            assert len(keys) == 2 and keys[0] == keys[1] != ""
            assert [(e.state, e.attempt) for e in h.of_type("tool")][-1] == ("succeeded", 2)
            assert "BK-19:00" in h.of_type("agent_text")[-1].text


async def test_a_get_tool_carries_no_key() -> None:
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/book"))
        spec["endpoint"]["method"] = "GET"
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert keys_seen(server, "/book") == [""]
            assert h.session.tool_audit[0].idempotency_key == ""


async def test_resumed_session_on_another_pod_replays_the_booking(pod_platforms: Any) -> None:
    async with ToolServer() as server:
        cfg = make_config(rules=[BOOK_RULE], tools=[tool("book_table", server.url("/book"))])
        async with Harness(cfg, tool_platform=pod_platforms()) as first:
            first.session.push_text("book a table")
            await first.drain_agent()
        assert len(server.calls("/book")) == 1
        snapshot = first.snapshots[-1]
        # Another pod: a new session from the snapshot, new turn and call ids, the same Redis.
        async with Harness(cfg, conversation=snapshot, tool_platform=pod_platforms()) as resumed:
            resumed.session.push_text("please book that table again")
            await resumed.drain_agent()
            assert len(server.calls("/book")) == 1  # nothing sent twice
            [record] = resumed.session.tool_audit
            assert record.outcome == "replayed" and record.attempts == 0 and record.turn_id == "turn-2"
            assert record.idempotency_key == first.session.tool_audit[0].idempotency_key
            assert resumed.of_type("agent_text")[-1].text.endswith("confirmation BK-19:00.")
            assert_paired(resumed.session.conversation.messages)


async def test_two_parallel_identical_calls_send_once(pod_platforms: Any) -> None:
    async with ToolServer() as server:
        spec = ToolSpec.model_validate(tool("book_table", server.url("/hang"), timeoutSeconds=30))
        events: list[ToolEvent] = []
        # The same session's call on two pods at once (the worst case): one Redis decides.
        runners = [ToolRunner([spec], "s-par", events.append, platform=pod_platforms()) for _ in range(2)]
        calls = [ToolCall(id=f"c{i}", name="book_table", arguments=json.dumps(BOOK)) for i in range(2)]
        tasks = [
            asyncio.create_task(r.execute(c, dict(BOOK), lambda: False, "turn-1"))
            for r, c in zip(runners, calls, strict=True)
        ]
        deadline = asyncio.get_running_loop().time() + 20
        while not server.calls("/hang"):
            assert asyncio.get_running_loop().time() < deadline, "no request arrived"
            await asyncio.sleep(0.01)
        server.release.set()
        outcomes = await asyncio.gather(*tasks)
        assert len(server.calls("/hang")) == 1
        assert [o.state for o in outcomes] == ["succeeded", "succeeded"]
        assert outcomes[0].content == outcomes[1].content
        audits = sorted(r.audit[0].outcome for r in runners)
        assert audits == ["replayed", "succeeded"]
        for r in runners:
            await r.aclose()


async def test_parallel_calls_of_a_round_overlap_at_the_server(openai_server: Any, monkeypatch: Any) -> None:
    from tests.wire.openai_server import ChatReply, ScriptedToolCall

    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    async with ToolServer() as server:
        openai_server.script_chat(
            ChatReply(
                tool_calls=[
                    ScriptedToolCall(name="book_table", arguments=json.dumps({"time": "18:00", "people": 2})),
                    ScriptedToolCall(name="book_table", arguments=json.dumps({"time": "20:00", "people": 2})),
                ]
            ),
            ChatReply(text="Both are booked."),
        )
        cfg = make_config(tools=[tool("book_table", server.url("/overlap"), timeoutSeconds=30, retries=0)])
        cfg.pipeline.llm.provider = "openai"
        cfg.pipeline.llm.base_url = openai_server.base_url
        async with Harness(cfg, tool_platform=ToolPlatform()) as h:
            h.session.push_text("book two tables")
            await h.drain_agent()
            # Each request answers only once the other is in flight too: they ran side by side.
            assert server.max_in_flight == 2 and len(server.calls("/overlap")) == 2
            assert [r.outcome for r in h.session.tool_audit] == ["succeeded", "succeeded"]
            assert len({r.idempotency_key for r in h.session.tool_audit}) == 2
            assert h.of_type("agent_text")[-1].text == "Both are booked."


async def test_breaker_opens_and_refuses_without_a_request() -> None:
    async with ToolServer(fail_first=100) as server:
        spec = ToolSpec.model_validate(
            tool(
                "book_table",
                server.url("/flaky"),
                retries=0,
                breaker={"failureThreshold": 2, "cooldownSeconds": 600},
            )
        )
        runner = ToolRunner([spec], "s-br", lambda e: None)
        outcomes = []
        for i in range(3):
            call = ToolCall(
                id=f"c{i}", name="book_table", arguments=json.dumps({"time": f"1{i}:00", "people": 1})
            )
            outcomes.append(await runner.execute(call, json.loads(call.arguments), lambda: False))
        assert len(server.calls("/flaky")) == 2
        assert [o.state for o in outcomes] == ["failed", "failed", "failed"]
        assert json.loads(outcomes[2].content)["error"] == "circuit_open"
        assert "unavailable after repeated failures" in outcomes[2].error
        assert [r.outcome for r in runner.audit] == ["failed", "failed", "circuit_open"]
        assert metric("voicefleet_tool_breaker_state", tool="book_table") == 2  # open
        assert metric("voicefleet_tool_breaker_rejections_total", tool="book_table") >= 1
        await runner.aclose()


async def test_concurrency_limit_refuses_beyond_a_bounded_wait() -> None:
    async with ToolServer() as server:
        spec = ToolSpec.model_validate(
            tool(
                "book_table",
                server.url("/hang"),
                timeoutSeconds=30,
                concurrency={"limit": 1, "queueTimeoutSeconds": 0.2},
            )
        )
        runner = ToolRunner([spec], "s-cc", lambda e: None)
        first = asyncio.create_task(
            runner.execute(
                ToolCall(id="a", name="book_table", arguments="{}"),
                {"time": "10:00", "people": 1},
                lambda: False,
            )
        )
        deadline = asyncio.get_running_loop().time() + 20
        while not server.calls("/hang"):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        second = await runner.execute(
            ToolCall(id="b", name="book_table", arguments="{}"), {"time": "11:00", "people": 1}, lambda: False
        )
        assert json.loads(second.content)["error"] == "concurrency_limited"
        assert len(server.calls("/hang")) == 1
        server.release.set()
        assert (await first).state == "succeeded"
        assert [r.outcome for r in runner.audit] == ["concurrency_limited", "succeeded"]
        await runner.aclose()


async def test_audit_line_goes_to_the_audit_logger(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        ToolServer() as server,
        Harness(make_config(rules=[BOOK_RULE], tools=[tool("book_table", server.url("/book"))])) as h,
    ):
        h.session._tools.node = lambda: "booking"  # flows set this hook
        with caplog.at_level(logging.INFO, logger="voicefleet.audit"):
            h.session.push_text("book a table")
            await h.drain_agent()
    assert metric("voicefleet_tool_audit_records_total", tool="book_table", outcome="succeeded") >= 1
    [line] = [r for r in caplog.records if r.name == "voicefleet.audit"]
    audit = line.audit  # type: ignore[attr-defined]
    assert audit["tool"] == "book_table" and audit["outcome"] == "succeeded" and audit["node"] == "booking"
    assert audit["idempotencyKey"] == h.session.tool_audit[0].idempotency_key


async def test_redis_down_the_call_still_runs_once(private_redis: RedisServer) -> None:
    client = connect(RedisConnection(url=private_redis.url))
    platform = ToolPlatform.with_redis(client, AgentKeys("default", "tools-down"), [])
    private_redis.stop()
    try:
        async with ToolServer() as server:
            cfg = make_config(rules=[BOOK_RULE], tools=[tool("book_table", server.url("/book"))])
            async with Harness(cfg, tool_platform=platform) as h:
                for _ in range(2):
                    h.session.push_text("book a table")
                    await h.drain_agent()
                # The pod's own memory stands in for Redis: the repeat is still not sent.
                assert len(server.calls("/book")) == 1
                assert [r.outcome for r in h.session.tool_audit] == ["succeeded", "replayed"]
    finally:
        await client.aclose()


async def test_identical_calls_in_one_round_send_once(openai_server: Any, monkeypatch: Any) -> None:
    from tests.wire.openai_server import ChatReply, ScriptedToolCall

    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    async with ToolServer() as server:
        same = json.dumps(BOOK)
        openai_server.script_chat(
            ChatReply(tool_calls=[ScriptedToolCall(name="book_table", arguments=same) for _ in range(2)]),
            ChatReply(text="Booked."),
        )
        cfg = make_config(tools=[tool("book_table", server.url("/book"))])
        cfg.pipeline.llm.provider = "openai"
        cfg.pipeline.llm.base_url = openai_server.base_url
        async with Harness(cfg) as h:
            h.session.push_text("book it, book it")
            await h.drain_agent()
            assert len(server.calls("/book")) == 1
            assert sorted(r.outcome for r in h.session.tool_audit) == ["replayed", "succeeded"]
            assert_paired(h.session.conversation.messages)
