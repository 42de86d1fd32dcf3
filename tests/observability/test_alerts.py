"""Every alert of the chart's PrometheusRule, rendered by helm, passes its `promtool test rules` cases.

Each alert has a file in alert_tests/ named after it, with at least one case where it fires and one
where it must stay quiet; an alert without one fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.support.chart import alert_names, render, rule_groups

CASES = Path(__file__).parent / "alert_tests"


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return rule_groups()


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus; hack/bootstrap.sh does)")
    return binary


def alert_cases(path: Path) -> list[dict[str, Any]]:
    return [case for test in yaml.safe_load(path.read_text())["tests"] for case in test["alert_rule_test"]]


def test_every_alert_has_a_firing_and_a_quiet_case(rules: dict[str, Any]) -> None:
    alerts = alert_names(rules)
    assert len(alerts) >= 10
    assert {p.stem for p in CASES.glob("*.yaml")} == set(alerts), "one test file per alert, named after it"
    for alert in alerts:
        cases = alert_cases(CASES / f"{alert}.yaml")
        assert {c["alertname"] for c in cases} == {alert}
        assert any(c["exp_alerts"] for c in cases), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in cases), f"{alert}: no case where it must not fire"


def test_rules_are_valid(rules: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names(rules))} rules found" in out.stdout


def test_promtool_unit_tests_pass(rules: dict[str, Any], tmp_path: Path) -> None:
    # promtool reads rule_files relative to each test file.
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    files = [shutil.copy(p, tmp_path) for p in sorted(CASES.glob("*.yaml"))]
    out = subprocess.run(
        [promtool(), "test", "rules", *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(files)


def test_pods_export_the_outcomes_alerts_count_from_zero() -> None:
    """An alert's rate() or increase() sees nothing of a series born at 1, so these exist from start-up."""
    import agent_pod.pipeline.session
    import agent_pod.sessions.session_metrics
    import agent_pod.transports.transport_metrics

    assert agent_pod.pipeline.session and agent_pod.sessions.session_metrics
    assert agent_pod.transports.transport_metrics
    for name, label, values in [
        ("voicefleet_sessions_total", "outcome", ["drain_deadline", "client_ended", "other"]),
        ("voicefleet_placements_total", "result", ["no_capacity", "unavailable", "placed"]),
        ("voicefleet_migrations_total", "outcome", ["no_target", "store_down", "not_followed", "not_quiet"]),
        ("voicefleet_transport_playout_missed_ticks_total", "outcome", ["lost", "caught_up"]),
    ]:
        for value in values:
            assert REGISTRY.get_sample_value(name, {label: value}) is not None, (name, value)


def test_extra_rule_labels_go_on_the_rule_only() -> None:
    """alerts.labels (what a Prometheus' ruleSelector matches) label the PrometheusRule; its groups are the
    same, each once."""
    docs = render("alerts.enabled=true", "alerts.labels.release=kps")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"]["groups"] == rule_groups()["groups"]
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)) and "voicefleet.knowledge" in names
