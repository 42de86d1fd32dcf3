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


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rules file."""
    return {"groups": _one(render("alerts.enabled=true"), "PrometheusRule")["spec"]["groups"]}


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def service_monitor() -> dict[str, Any]:
    return _one(render("metrics.serviceMonitor.enabled=true"), "ServiceMonitor")


def pod_monitor() -> dict[str, Any]:
    return _one(render("metrics.serviceMonitor.enabled=true"), "PodMonitor")


def dashboard() -> dict[str, Any]:
    config_map = _one(render("dashboard.enabled=true"), "ConfigMap")
    (text,) = config_map["data"].values()
    return dict(json.loads(text))
