"""The chart watches knowledge servers: a PodMonitor finds the pods a KnowledgeBase renders, and the
knowledge dashboard and alerts cover every metric the servers and agents export, in valid PromQL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from agent_pod.config import KnowledgeSpec
from agent_pod.knowledge.call import CallKnowledge
from agent_pod.knowledge.ingest import Ingestor
from agent_pod.knowledge.server import KnowledgeServer
from agent_pod.knowledge.spec import KnowledgeBaseConfig, KnowledgeBaseSpec
from agent_pod.knowledge.sqlite_store import SqliteStore
from tests.observability.test_alerts import promtool
from tests.observability.test_dashboard import dashboard_queries
from tests.support.chart import dashboard, pod_monitor, rule_groups
from tests.support.knowledge import embedder
from voicefleet_operator.render import Owner
from voicefleet_operator.render_knowledge import render_knowledge

# What the knowledge server and the agent's retrieval export (issue 14).
METRICS = {
    "voicefleet_kb_documents",
    "voicefleet_kb_chunks",
    "voicefleet_kb_index_bytes",
    "voicefleet_kb_ingestion_lag_seconds",
    "voicefleet_kb_source_stale",
    "voicefleet_kb_sync_total",
    "voicefleet_kb_search_seconds_bucket",
    "voicefleet_kb_search_empty_total",
    "voicefleet_kb_searches_total",
    "voicefleet_kb_compaction_seconds_bucket",
    "voicefleet_kb_compaction_freed_bytes_total",
    "voicefleet_kb_last_compaction_timestamp_seconds",
    "voicefleet_retrieval_seconds_bucket",
    "voicefleet_retrieval_empty_total",
}

ALERTED = (
    "voicefleet_kb_source_stale",
    "voicefleet_kb_sync_total",
    "voicefleet_kb_search_seconds_bucket",
    "voicefleet_kb_search_empty_total",
    "voicefleet_kb_last_compaction_timestamp_seconds",
    "voicefleet_kb_index_bytes",
)


def board_queries() -> list[tuple[str, str]]:
    return dashboard_queries(dashboard("-knowledge-dashboard"))


def test_the_knowledge_pod_monitor_selects_knowledge_server_pods_on_their_metrics_port() -> None:
    spec = pod_monitor("-knowledge")["spec"]
    kb = KnowledgeBaseSpec.model_validate({"sources": [{"name": "faq", "configMap": {"name": "faq"}}]})
    pod = render_knowledge(Owner("prices", "shop", "uid"), kb, "img").stateful_set["spec"]["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert (
        not spec["selector"]["matchLabels"].items()
        <= pod_monitor()["spec"]["selector"]["matchLabels"].items()
    )
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}


def test_every_knowledge_metric_is_on_the_board_and_the_server_ones_alerted() -> None:
    shown = " ".join(expr for _, expr in board_queries())
    assert {m for m in METRICS if re.search(rf"\b{m}\b", shown)} == METRICS
    groups = {g["name"]: g for g in rule_groups()["groups"]}
    alerted = " ".join(r["expr"] for r in groups["voicefleet.knowledge"]["rules"])
    for metric in ALERTED:
        assert metric in alerted


def test_every_board_query_is_valid_promql(tmp_path: Path) -> None:
    queries = board_queries()
    assert len(queries) >= 10
    rules = [
        {"record": f"knowledge_board:q{i}", "expr": expr.replace("$namespace", ".*")}
        for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "board", "rules": rules}]}))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_what_the_board_and_alerts_rate_is_exported_at_zero_from_the_start(tmp_path: Path) -> None:
    """A rate() or increase() sees nothing of a series born at 1: a base's first compaction, empty search
    or failed sync, and a call's first retrieval, count only when the series were there before."""
    config = KnowledgeBaseConfig.model_validate(
        {"name": "zeroes", "spec": {"sources": [{"name": "faq", "configMap": {"name": "faq"}}]}}
    )
    KnowledgeServer(
        config,
        lambda: SqliteStore(tmp_path / "kb.sqlite"),
        embedder(),
        lambda store: Ingestor("zeroes", store, embedder()),
    )
    for name in ("search_seconds_count", "searches_total", "search_empty_total", "compaction_seconds_count",
                 "compaction_freed_bytes_total"):  # fmt: skip
        assert REGISTRY.get_sample_value(f"voicefleet_kb_{name}", {"kb": "zeroes"}) == 0, name
    for outcome in ("ok", "partial", "failed"):
        labels = {"kb": "zeroes", "source": "faq", "outcome": outcome}
        assert REGISTRY.get_sample_value("voicefleet_kb_sync_total", labels) == 0, outcome
    CallKnowledge(KnowledgeSpec.model_validate({"bases": [], "mode": "both"}))
    for mode in ("tool", "context"):
        assert REGISTRY.get_sample_value("voicefleet_retrieval_seconds_count", {"mode": mode}) is not None
        assert REGISTRY.get_sample_value("voicefleet_retrieval_empty_total", {"mode": mode}) is not None
