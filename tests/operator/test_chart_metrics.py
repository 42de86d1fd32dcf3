"""The chart's alerts and dashboard, and docs/metrics.md, match what the pods and the operator export."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import agent_pod.metrics
import agent_pod.sessions.metrics
import agent_pod.transports.metrics
import voicefleet_operator.metrics
from voicefleet_operator.devcluster import REPO

CHART = REPO / "helm" / "voicefleet"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> set[str]:
    assert agent_pod.metrics and agent_pod.sessions.metrics and agent_pod.transports.metrics
    assert voicefleet_operator.metrics
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_every_metric_the_chart_queries_is_exported() -> None:
    queried = set()
    for path in [CHART / "templates" / "alerts.yaml", CHART / "dashboards" / "voicefleet.json"]:
        queried |= set(re.findall(r"\bvoicefleet_[a-z0-9_]+", path.read_text()))
    assert len(queried) >= 15
    assert "voicefleet_transport_playout_missed_ticks_total" in queried
    assert queried - exported() == set()


def test_docs_list_exactly_the_exported_metrics() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(voicefleet_[a-z0-9_]+)`", doc, re.M))
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith("voicefleet_")
    }
    assert documented == names
