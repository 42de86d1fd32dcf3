"""The chart watches knowledge servers: a PodMonitor finds the pods a KnowledgeBase renders, and the
knowledge dashboard and alerts cover every metric the servers and agents export, in valid PromQL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from agent_pod.knowledge.spec import KnowledgeBaseSpec
from tests.observability.test_alerts import promtool
from tests.observability.test_dashboard import dashboard_queries
from tests.support.chart import dashboard, pod_monitor, rule_groups
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
