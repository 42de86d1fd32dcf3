"""The knowledge server on loopback: the real sqlite store, the offline embedder and the ingestor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from agent_pod.knowledge.models import KnowledgeStatus, SearchResponse
from tests.support.knowledge import SOURCE, knowledge_server, write_docs
from tests.support.wait import async_wait_for

DOCS: dict[str, str | None] = {
    "prices.md": "# Prices\n\nThe premium plan costs 49 euros a month. The basic plan is free.",
    "hours.md": "# Opening hours\n\nThe shop opens at nine in the morning and closes at six in the evening.",
    "returns.md": "# Returns\n\nItems can be returned within thirty days with the receipt.",
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def search(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    kwargs = {"data": body} if isinstance(body, (bytes, str)) else {"json": body}
    async with http.post(f"{url}/v1/search", **kwargs) as resp:
        return resp.status, await resp.json()


async def test_search_status_and_metrics(tmp_path: Path) -> None:
    async with knowledge_server(tmp_path, DOCS, name="srv") as (_, url), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as resp:
            assert resp.status == 200
        status, body = await search(http, url, {"query": "how much is the premium plan?", "k": 2})
        assert status == 200, body
        answer = SearchResponse.model_validate(body)
        assert answer.hits[0].doc_id.endswith("prices.md") and answer.generation > 0
        async with http.get(f"{url}/v1/status") as resp:
            kb = KnowledgeStatus.model_validate(await resp.json())
        assert kb.ready and kb.documents == 3 and kb.index_bytes > 0
        assert kb.sources[0].name == SOURCE and kb.sources[0].last_success is not None
        assert sample("voicefleet_kb_documents", kb="srv", source=SOURCE) == 3
        assert sample("voicefleet_kb_sync_total", kb="srv", source=SOURCE, outcome="ok") >= 1
        assert sample("voicefleet_kb_searches_total", kb="srv") >= 1
        assert sample("voicefleet_kb_search_seconds_count", kb="srv") >= 1
        assert 0 <= sample("voicefleet_kb_ingestion_lag_seconds", kb="srv", source=SOURCE) < 60
        assert sample("voicefleet_kb_index_bytes", kb="srv") > 0


async def test_a_tombstoned_document_is_never_served(tmp_path: Path) -> None:
    async with (
        knowledge_server(tmp_path, DOCS, name="tomb") as (server, url),
        aiohttp.ClientSession() as http,
    ):
        _, before = await search(http, url, {"query": "returns within thirty days receipt"})
        assert any(h["docId"].endswith("returns.md") for h in before["hits"])
        write_docs(tmp_path, {"returns.md": None})
        async with http.post(f"{url}/v1/sync", json={"sources": [SOURCE]}) as resp:
            assert resp.status == 202

        async def gone() -> bool:
            return server.status.documents == 2

        await async_wait_for(gone, timeout=30, what="the removed document tombstoned")
        for mode in ("hybrid", "keyword", "vector"):
            _, after = await search(http, url, {"query": "returns within thirty days receipt", "mode": mode})
            assert not any(h["docId"].endswith("returns.md") for h in after["hits"]), mode


async def test_bad_requests_get_400_and_the_server_keeps_serving(tmp_path: Path) -> None:
    async with knowledge_server(tmp_path, DOCS, name="bad") as (_, url), aiohttp.ClientSession() as http:
        bad: list[Any] = [
            b"{not json",
            b"[]",
            {"query": ""},
            {"query": "x", "k": 0},
            {"query": "x", "mode": "psychic"},
            {"query": "x", "unknown": 1},
            {"query": "x" * 5000},
        ]
        for body in bad:
            status, answer = await search(http, url, body)
            assert status == 400, (body, answer)
            assert answer["error"]["message"].startswith("bad search request"), answer
        async with http.post(f"{url}/v1/search", data=b"x" * 100_000) as resp:
            assert resp.status == 413
        async with http.post(f"{url}/v1/sync", json={"sources": ["nope"]}) as resp:
            assert resp.status == 400 and "nope" in (await resp.json())["error"]["message"]
        status, answer = await search(http, url, {"query": "opening hours"})
        assert status == 200 and answer["hits"][0]["docId"].endswith("hours.md")


async def test_compaction_is_measured(tmp_path: Path) -> None:
    async with knowledge_server(tmp_path, DOCS, name="comp") as (server, _):
        server.config.spec.maintenance.compact_when_free_ratio = 0.0  # always run
        await server.compact()
        assert server.status.last_compaction is not None
        assert sample("voicefleet_kb_compaction_seconds_count", kb="comp") == 1
        assert sample("voicefleet_kb_last_compaction_timestamp_seconds", kb="comp") > 0


@pytest.mark.parametrize("on_stale", ["serve", "withhold"])
async def test_documents_past_max_age_are_flagged_or_withheld_and_counted(
    tmp_path: Path, on_stale: str
) -> None:
    name = f"old-{on_stale}"
    async with (
        knowledge_server(tmp_path, DOCS, name=name, maxAgeSeconds=600, onStale=on_stale) as (server, url),
        aiohttp.ClientSession() as http,
    ):
        query = {"query": "how much is the premium plan?", "k": 2}
        _, fresh = await search(http, url, query)
        assert fresh["hits"] and not any(h.get("stale") for h in fresh["hits"])
        later = server.clock() + 700
        server.clock = lambda: later  # no sync vouched for the documents since
        _, old = await search(http, url, query)
        if on_stale == "serve":
            assert old["hits"] and all(h["stale"] for h in old["hits"]), old
        else:
            assert old["hits"] == []
        kb = await server.refresh_status()
        assert (kb.sources[0].stale, kb.sources[0].stale_documents) == (True, 3)
        assert sample("voicefleet_kb_source_stale", kb=name, source=SOURCE) == 1
