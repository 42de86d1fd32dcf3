"""The chart's monitors find what they should: the operator through its Service, agent pods as pods
(so a draining pod, already out of its Services, is still scraped until it exits)."""

from __future__ import annotations

from tests.support.chart import RELEASE_NAMESPACE, pod_monitor, render, service_monitor
from voicefleet_operator.render import labels


def test_the_pod_monitor_selects_agent_pods_on_their_metrics_port() -> None:
    spec = pod_monitor()["spec"]
    assert spec["selector"]["matchLabels"].items() <= labels("receptionist").items()
    assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["metrics"]
    assert spec["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}  # the namespaces it manages


def test_the_service_monitor_selects_only_the_operator() -> None:
    spec = service_monitor()["spec"]
    docs = render("metrics.serviceMonitor.enabled=true")
    services = [d for d in docs if d["kind"] == "Service"]
    chosen = [
        s["metadata"]["name"]
        for s in services
        if spec["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
    ]
    assert chosen == ["vf-voicefleet-operator-metrics"]
    assert not spec["selector"]["matchLabels"].items() <= labels("receptionist").items()
