"""The Helm chart rendered with the pinned helm binary, and the parts of it the observability tests read."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from voicefleet_operator.devcluster import REPO, kube_bin_dir

CHART = REPO / "helm" / "voicefleet"
RELEASE_NAMESPACE = "monitoring-test"


def render(*values: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with ``--set`` values; the documents it renders."""
    sets = [arg for value in values for arg in ("--set", value)]
    out = subprocess.run(
        [str(kube_bin_dir() / "helm"), "template", "vf", str(CHART), "--kube-version", "1.35.0",
         "--namespace", RELEASE_NAMESPACE, *sets],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    """The one ``kind`` whose name ends in ``suffix`` (the chart names its objects vf-voicefleet...)."""
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == f"vf-voicefleet{suffix}"]
    return doc


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rules file."""
    return {"groups": _one(render("alerts.enabled=true"), "PrometheusRule")["spec"]["groups"]}


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def service_monitor() -> dict[str, Any]:
    return _one(render("metrics.serviceMonitor.enabled=true"), "ServiceMonitor")


def pod_monitor(suffix: str = "-agents") -> dict[str, Any]:
    """The agent pods' PodMonitor; suffix "-knowledge": the knowledge servers'."""
    return _one(render("metrics.serviceMonitor.enabled=true"), "PodMonitor", suffix)


def dashboard(suffix: str = "-dashboard") -> dict[str, Any]:
    """The main board; suffix "-knowledge-dashboard": the KnowledgeBases' board."""
    config_map = _one(render("dashboard.enabled=true"), "ConfigMap", suffix)
    (text,) = config_map["data"].values()
    return dict(json.loads(text))
