"""The chart's alerts and dashboard, and docs/metrics.md, match what the pods and the operator export."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import agent_pod.flows.metrics
import agent_pod.knowledge.ingest_metrics
import agent_pod.knowledge.retrieval_metrics
import agent_pod.knowledge.server_metrics
import agent_pod.pipeline_metrics
import agent_pod.sessions.session_metrics
import agent_pod.transports.transport_metrics
import voicefleet_operator.operator_metrics
from voicefleet_operator.devcluster import REPO
from voicefleet_operator.render import PROMPT_VERSION_LABEL, REVISION_LABEL

CHART = REPO / "helm" / "voicefleet"
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")
# Labels, not metrics: the PodMonitor copies these pod labels onto every agent series, with each
# character a label name cannot hold turned into "_".
POD_LABELS = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in (REVISION_LABEL, PROMPT_VERSION_LABEL)}


def metrics() -> dict[str, str]:
    """Every voicefleet metric by the name it is queried and documented by (counters end in _total),
    with its type."""
    assert (
        agent_pod.pipeline_metrics
        and agent_pod.flows.metrics
        and agent_pod.knowledge.ingest_metrics
        and agent_pod.knowledge.retrieval_metrics
        and agent_pod.knowledge.server_metrics
        and agent_pod.sessions.session_metrics
        and agent_pod.transports.transport_metrics
    )
    assert voicefleet_operator.operator_metrics
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in REGISTRY.collect()
        if family.name.startswith("voicefleet_")
    }


def exported() -> set[str]:
    """Every series name a query can use."""
    return {
        name + suffix
        for name, kind in metrics().items()
        for suffix in (HISTOGRAM_SERIES if kind == "histogram" else ("",))
    }


def test_every_metric_the_chart_queries_is_exported() -> None:
    queried = set()
    for path in [CHART / "templates" / "alerts.yaml", *(CHART / "dashboards").glob("*.json")]:
        queried |= set(re.findall(r"\bvoicefleet_[a-z0-9_]+", path.read_text()))
    assert len(queried) >= 15
    assert "voicefleet_transport_playout_missed_ticks_total" in queried
    assert "voicefleet_io_revision" in queried  # the Revisions row compares revisions
    assert queried - POD_LABELS - exported() == set()


def test_docs_list_exactly_the_exported_metrics() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(voicefleet_[a-z0-9_]+)`", doc, re.M))
    assert documented == set(metrics())
