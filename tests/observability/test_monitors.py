"""The chart's monitors find what they should: the operator through its Service, agent pods as pods
(so a draining pod, already out of its Services, is still scraped until it exits)."""

from __future__ import annotations

from tests.support.chart import RELEASE_NAMESPACE, pod_monitor, render, service_monitor
from tests.support.prometheus import pod_target_labels
from voicefleet_operator.render import Owner, labels
from voicefleet_operator.render import render as render_agent
from voicefleet_operator.spec import VoiceAgentSpec


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


def test_the_pod_monitor_labels_every_agent_series_with_its_revision_and_prompt_version() -> None:
    spec = VoiceAgentSpec.model_validate({"prompt": {"inline": "Be brief.", "version": "v3"}})
    children = render_agent(Owner("receptionist", "calls", "uid-1"), spec, "Be brief.", 2, "redis://r:6379")
    pod_labels = children.deployment["spec"]["template"]["metadata"]["labels"]
    copied = pod_target_labels(pod_monitor()["spec"]["podTargetLabels"], pod_labels)
    # The names docs/metrics.md gives and the dashboard's Revisions row groups by.
    assert copied == {"voicefleet_io_revision": children.config_hash, "voicefleet_io_prompt_version": "v3"}
