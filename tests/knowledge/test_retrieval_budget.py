"""A knowledge base that is down or slow never makes a turn late: the search gives up at the budget and
the turn answers without its passages (a real pipeline, a real hanging HTTP server, a closed port)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig, KnowledgeSpec
from agent_pod.transports.http import serve
from tests.pipeline.harness import Harness, make_config
from tests.support.net import free_port

BUDGET_MS = 200
SEARCH_RULE = {
    "match": "price",
    "tool": "search_knowledge",
    "arguments": {"query": "premium plan price"},
    "then": "Knowledge said: {result}",
}


@pytest.fixture
async def hanging_base() -> AsyncIterator[str]:
    """A knowledge server that accepts searches and never answers."""
    release = asyncio.Event()

    async def search(_: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"hits": [], "tookMs": 0, "generation": 0})

    app = web.Application()
    app.add_routes([web.post("/v1/search", search)])
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        await runner.cleanup()


def agent(urls: dict[str, str], mode: str, rules: list[dict[str, Any]] | None = None) -> AgentConfig:
    cfg = make_config(rules=rules or [SEARCH_RULE])
    cfg.knowledge = KnowledgeSpec.model_validate(
        {"bases": [{"name": n, "url": u} for n, u in urls.items()], "mode": mode, "budgetMs": BUDGET_MS}
    )
    return cfg


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_slow_and_down_bases_give_an_empty_tool_result_within_budget(hanging_base: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    empty_before = sample("voicefleet_retrieval_empty_total", mode="tool")
    timeouts_before = sample("voicefleet_retrieval_base_failures_total", base="slow", reason="timeout")
    async with Harness(agent({"slow": hanging_base, "down": down}, "tool")) as h:
        started = time.monotonic()
        h.session.push_text("what is the price of premium?")
        await h.drain_agent(within=20)
        took = time.monotonic() - started
        [record] = [r for r in h.session.tool_audit if r.tool == "search_knowledge"]
        assert record.outcome == "succeeded"
        assert record.latency_ms < BUDGET_MS + 150, record.latency_ms  # gave up at the budget
        [final] = [e for e in h.of_type("agent_text") if e.final]
        answer = json.loads(final.text.removeprefix("Knowledge said: "))
        assert answer["passages"] == [] and sorted(answer["unavailable"]) == ["down", "slow"]
        assert h.session.turn_records[-1].knowledge_docs == []
        assert took < 5, took
    assert sample("voicefleet_retrieval_empty_total", mode="tool") == empty_before + 1
    assert (
        sample("voicefleet_retrieval_base_failures_total", base="slow", reason="timeout")
        == timeouts_before + 1
    )


async def test_context_mode_with_a_hanging_base_answers_without_a_block(hanging_base: str) -> None:
    rules = [{"match": "hours", "reply": "{system_prompt}"}]
    timeouts_before = sample("voicefleet_retrieval_base_failures_total", base="slow", reason="timeout")
    async with Harness(agent({"slow": hanging_base}, "context", rules)) as h:
        h.session.push_text("what are your opening hours?")
        await h.drain_agent(within=20)
        [final] = [e for e in h.of_type("agent_text") if e.final]
        assert final.text and "Knowledge base passages" not in final.text
        assert h.session.turn_records[-1].knowledge_docs == []
        latency = h.of_type("turn_metrics")[0].response_latency_ms
        assert BUDGET_MS * 0.9 <= latency < BUDGET_MS + 1000, latency  # waited the budget, not the base
    assert (
        sample("voicefleet_retrieval_base_failures_total", base="slow", reason="timeout")
        == timeouts_before + 1
    )
