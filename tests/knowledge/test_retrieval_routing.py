"""The pure parts of retrieval in the call: routing by metadata, merging bases, rendering passages."""

from __future__ import annotations

import json

from agent_pod.config import KnowledgeSpec
from agent_pod.knowledge.client import merge_hits
from agent_pod.knowledge.freshness import ingests, sync_outcome
from agent_pod.knowledge.models import Hit, SourceError, SourceStatus
from agent_pod.knowledge.passages import CONTEXT_HEADER, context_block, tool_result
from agent_pod.knowledge.routing import route


def hit(doc: str, score: float, chunk: int = 0, text: str = "text") -> Hit:
    return Hit(
        doc_id=doc,
        chunk_id=f"{doc}#{chunk}",
        source="s",
        partition="",
        uri="",
        title=doc,
        text=text,
        score=score,
    )


SPEC = KnowledgeSpec.model_validate(
    {
        "bases": [
            {"name": "faq", "url": "http://faq"},
            {"name": "prices-eu", "url": "http://eu", "labels": {"region": "eu"}},
            {"name": "prices-us", "url": "http://us", "labels": {"region": "us"}},
        ],
        "partitionFromMetadata": "tenant",
        "baseLabelFromMetadata": "region",
    }
)


def test_route_picks_the_regions_base_and_the_tenants_partition() -> None:
    r = route(SPEC, {"region": "eu", "tenant": "acme"})
    assert [b.name for b in r.bases] == ["faq", "prices-eu"]
    assert r.partitions == ["acme"]


def test_route_without_metadata_searches_shared_data_only() -> None:
    r = route(SPEC, {})
    assert [b.name for b in r.bases] == ["faq"]  # no regional base for a call of unknown region
    assert r.partitions == []  # the shared partition only, never every tenant's


def test_route_unset_fields_search_everything() -> None:
    r = route(KnowledgeSpec.model_validate({"bases": SPEC.model_dump()["bases"]}), {"region": "eu"})
    assert len(r.bases) == 3 and r.partitions is None


def test_merge_keeps_the_best_k_above_min_score_each_chunk_once() -> None:
    merged = merge_hits([[hit("a", 0.9), hit("b", 0.2)], [hit("a", 0.5), hit("c", 0.7)]], k=2, min_score=0.3)
    assert [(h.doc_id, h.score) for h in merged] == [("a", 0.9), ("c", 0.7)]


def test_context_block_holds_whole_passages_within_its_bound() -> None:
    hits = [hit("a", 0.9, text="x" * 300), hit("b", 0.8, text="y" * 3000), hit("c", 0.7, text="z" * 100)]
    text, docs = context_block(hits, 1000)
    assert docs == ["a", "c"] and len(text) <= 1000  # b did not fit, c after it still did
    assert text.startswith(CONTEXT_HEADER) and 'doc="a"' in text and "y" * 50 not in text
    assert context_block([hit("b", 0.8, text="y" * 3000)], 1000) == ("", [])


def test_tool_result_names_documents_and_says_when_nothing_was_found() -> None:
    found = json.loads(tool_result([hit("a", 0.9)], []))
    assert found["passages"][0]["docId"] == "a" and "note" not in found
    empty = json.loads(tool_result([], ["prices-eu"]))
    assert (
        empty["passages"] == [] and "do not know" in empty["note"] and empty["unavailable"] == ["prices-eu"]
    )


def test_sync_outcome_and_the_ingesting_replica() -> None:
    ok = SourceStatus(name="p", last_sync=5, last_success=5)
    assert sync_outcome(ok, 5) == "ok"
    err = SourceError(reason="TooLarge", message="", at=5)
    assert sync_outcome(ok.model_copy(update={"errors": [err]}), 5) == "partial"
    assert sync_outcome(ok.model_copy(update={"last_success": 1}), 5) == "failed"
    assert ingests("kb-x-0", 3) and not ingests("kb-x-1", 3) and ingests("anything", 1)


def test_passages_name_their_section_where_the_text_may_not() -> None:
    deep = hit("travel", 0.9, text="A day pass is 12 euros.").model_copy(update={"heading": "Travel > Japan"})
    block, _ = context_block([deep, hit("faq", 0.5)], 1000)
    assert '<passage doc="travel" title="travel" section="Travel > Japan">' in block
    assert '<passage doc="faq" title="faq">' in block
    passages = json.loads(tool_result([deep, hit("faq", 0.5)], []))["passages"]
    assert passages[0]["section"] == "Travel > Japan" and "section" not in passages[1]
