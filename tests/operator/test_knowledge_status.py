"""A KnowledgeBase's status and Events from its server's report and the status before (pure)."""

from __future__ import annotations

from typing import Any

from agent_pod.knowledge.models import KnowledgeStatus
from voicefleet_operator.knowledge_status import KnowledgeObserved, decide_knowledge
from voicefleet_operator.spec_knowledge import MAX_STATUS_ERRORS, KnowledgeBaseStatus

T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T10:05:00Z"


def report(*sources: dict[str, Any], ready: bool = True) -> KnowledgeStatus:
    return KnowledgeStatus.model_validate(
        {
            "ready": ready,
            "documents": 40,
            "chunks": 300,
            "indexBytes": 9000,
            "embeddingModel": "l2",
            "generation": 7,
            "sources": list(sources),
        }
    )


FAQ = {"name": "faq", "documents": 10, "chunks": 50, "lastSync": 1_700_000_100, "lastSuccess": 1_700_000_100}
PRICES = {
    "name": "prices",
    "documents": 30,
    "chunks": 250,
    "lastSync": 1_700_000_200,
    "lastSuccess": 1_700_000_000,
}


def err(reason: str, at: float, document: str = "") -> dict[str, Any]:
    return {"reason": reason, "message": f"{reason} happened", "document": document, "at": at}


def decide(
    server: KnowledgeStatus | None, previous: KnowledgeBaseStatus | None = None, now: str = T0, **kw: Any
):
    return decide_knowledge(
        KnowledgeObserved(generation=3, server=server, **kw), previous or KnowledgeBaseStatus(), now
    )


def conds(status: KnowledgeBaseStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_healthy_report_is_copied_into_the_status() -> None:
    d = decide(report(FAQ, PRICES))
    s = d.status
    assert (s.documents, s.chunks, s.index_bytes, s.embedding_model, s.generation) == (40, 300, 9000, "l2", 7)
    assert s.observed_generation == 3
    assert s.last_sync_time == "2023-11-14T22:16:40Z"  # the newest attempt
    assert s.last_success_time == "2023-11-14T22:13:20Z"  # the oldest success: how fresh the base is
    assert conds(s) == {
        "Ready": ("True", "IndexReady"),
        "Stale": ("False", "Fresh"),
        "Degraded": ("False", "AsExpected"),
    }
    assert d.events == ()


def test_a_stale_source_is_named_with_one_event_per_transition() -> None:
    first = decide(report(FAQ, {**PRICES, "stale": True}))
    assert first.status.stale_sources == ["prices"]
    assert conds(first.status)["Stale"] == ("True", "SourcesStale")
    assert "prices" in next(c.message for c in first.status.conditions if c.type == "Stale")
    assert [(e.reason, e.warning) for e in first.events] == [("SourceStale", True)]
    again = decide(report(FAQ, {**PRICES, "stale": True}), first.status, T1)
    assert again.events == ()
    stale = next(c for c in again.status.conditions if c.type == "Stale")
    assert stale.last_transition_time == T0  # unchanged condition keeps its transition time
    some = decide(report(FAQ, {**PRICES, "stale": True, "staleDocuments": 2}), again.status, T1)
    assert "prices (2 documents)" in next(c.message for c in some.status.conditions if c.type == "Stale")
    fresh = decide(report(FAQ, PRICES), again.status, T1)
    assert [(e.reason, e.warning) for e in fresh.events] == [("SourceFresh", False)]
    assert conds(fresh.status)["Stale"] == ("False", "Fresh")


def test_each_new_source_error_is_one_warning_and_degrades_the_base() -> None:
    first = decide(report({**FAQ, "errors": [err("Unreachable", 100)]}, PRICES))
    assert conds(first.status)["Degraded"] == ("True", "Unreachable")
    assert [(e.reason, e.warning) for e in first.events] == [("Unreachable", True)]
    assert "source faq" in first.events[0].message
    assert conds(first.status)["Ready"] == ("True", "IndexReady")  # the last good index keeps serving
    same = decide(report({**FAQ, "errors": [err("Unreachable", 100)]}, PRICES), first.status, T1)
    assert same.events == ()  # not repeated every check
    more = report(
        {**FAQ, "errors": [err("Unreachable", 100)]}, {**PRICES, "errors": [err("TooLarge", 200, "big.pdf")]}
    )
    newer = decide(more, same.status, T1)
    assert [e.reason for e in newer.events] == ["TooLarge"] and "document big.pdf" in newer.events[0].message
    assert newer.status.errors[0].reason == "TooLarge"  # newest first


def test_errors_in_the_status_are_bounded_to_the_newest() -> None:
    many = [err("Malformed", float(i), f"d{i}") for i in range(25)]
    d = decide(report({**FAQ, "errors": many[:20]}, {**PRICES, "errors": many[20:]}))
    assert len(d.status.errors) == MAX_STATUS_ERRORS
    assert [e.at for e in d.status.errors] == [float(i) for i in range(24, 14, -1)]
    assert len(d.events) == MAX_STATUS_ERRORS


def test_an_unreachable_server_keeps_the_last_report_and_says_why() -> None:
    good = decide(report(FAQ, {**PRICES, "stale": True})).status
    down = decide(None, good, T1, server_error="GET /v1/status failed: 503")
    assert (down.status.documents, down.status.stale_sources) == (40, ["prices"])
    assert conds(down.status) == {
        "Ready": ("False", "ServerUnreachable"),
        "Stale": ("True", "SourcesStale"),
        "Degraded": ("True", "ServerUnreachable"),
    }
    assert down.events == ()
    never = decide(None, server_error="no endpoints")
    assert conds(never.status)["Stale"] == ("False", "Unknown")


def test_a_failed_reconcile_and_a_server_without_index() -> None:
    d = decide(report(FAQ, ready=False), reconcile_error="ApiException: 422")
    assert conds(d.status)["Ready"] == ("False", "NoIndex")
    assert conds(d.status)["Degraded"] == ("True", "ReconcileFailed")
