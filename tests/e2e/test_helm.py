"""The Helm chart: lint, render, install on the KWOK cluster, and run the operator with the chart's RBAC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_lifecycle import agent, ready
from tests.support.kube import Cluster, OperatorProcess
from tests.support.redis import RedisServer
from tests.support.wait import wait_for
from voicefleet_operator.devcluster import REPO

pytestmark = pytest.mark.e2e

CHART = REPO / "helm" / "voicefleet"
ALL_ON = "alerts.enabled=true,dashboard.enabled=true,metrics.serviceMonitor.enabled=true,example.enabled=true"


def test_lint_and_template_are_clean(kwok_cluster: Cluster) -> None:
    lint = kwok_cluster.kwok.helm("lint", str(CHART), "--strict", "--set", ALL_ON)
    assert "0 chart(s) failed" in lint.stdout
    rendered = kwok_cluster.kwok.helm(
        "template", "vf", str(CHART), "--kube-version", "1.35.0", "--set", ALL_ON
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "PrometheusRule",
        "ServiceMonitor",
        "ConfigMap",
        "VoiceAgent",
    } <= set(kinds)
    dashboard = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")
    panels = json.loads(dashboard["data"]["voicefleet.json"])["panels"]
    assert len(panels) >= 8


def test_values_schema_catches_typos(kwok_cluster: Cluster) -> None:
    out = kwok_cluster.kwok.helm(
        "template", "vf", str(CHART), "--kube-version", "1.35.0", "--set", "operator.replica=2", check=False
    )
    assert out.returncode != 0
    assert "replica" in out.stderr and "not allowed" in out.stderr


@pytest.fixture(scope="module")
def release(kwok_cluster: Cluster) -> Iterator[str]:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.kwok.helm("install", "vf", str(CHART), "-n", ns, "--wait", "--timeout", "120s")
    yield ns
    kwok_cluster.kwok.helm("uninstall", "vf", "-n", ns, check=False)


def test_install_runs_operator_and_redis(kwok_cluster: Cluster, release: str) -> None:
    deployments = {
        d["metadata"]["name"]: d for d in kwok_cluster.get("deployments", namespace=release)["items"]
    }
    assert set(deployments) == {"vf-voicefleet-operator", "vf-voicefleet-redis"}
    for dep in deployments.values():
        assert dep["status"].get("readyReplicas") == 1
    op = deployments["vf-voicefleet-operator"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in op["env"]}
    assert env["VOICEFLEET_DEFAULT_REDIS_URL"] == f"redis://vf-voicefleet-redis.{release}.svc:6379/0"


def test_rbac_is_least_privilege(kwok_cluster: Cluster, release: str) -> None:
    sa = f"system:serviceaccount:{release}:vf-voicefleet-operator"

    def can(verb: str, resource: str, ns: str = "default") -> bool:
        out = kwok_cluster.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", sa, check=False)
        return out.stdout.strip() == "yes"

    for verb, resource in [
        ("patch", "voiceagents.voicefleet.io"),
        ("patch", "voiceagents.voicefleet.io/status"),
        ("create", "deployments.apps"),
        ("patch", "pods"),
        ("create", "events"),
        ("get", "secrets"),
        ("create", "poddisruptionbudgets.policy"),
    ]:
        assert can(verb, resource), f"operator cannot {verb} {resource}"
    for verb, resource in [
        ("delete", "deployments.apps"),
        ("list", "secrets"),
        ("delete", "pods"),
        ("create", "clusterrolebindings"),
        ("delete", "voiceagents.voicefleet.io"),
        ("patch", "nodes"),
    ]:
        assert not can(verb, resource), f"operator may {verb} {resource}, more than it needs"
    assert can("update", "leases.coordination.k8s.io", release)
    assert not can("update", "leases.coordination.k8s.io", "kube-system")


def test_operator_works_with_only_the_charts_rbac(
    kwok_cluster: Cluster, release: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Runs the operator with the chart ServiceAccount's token: everything it does must be allowed."""
    token = kwok_cluster.kubectl("create", "token", "vf-voicefleet-operator", "-n", release).stdout.strip()
    admin = yaml.safe_load(kwok_cluster.kwok.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": cluster_entry["name"], "user": "operator"}}
                ],
                "current-context": "operator",
            }
        )
    )
    op = OperatorProcess(
        kwok_cluster, redis_server.url, extra_env={"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": release}
    )
    op.start(leader_election=True, identity="chart-rbac")
    try:
        ns = kwok_cluster.create_namespace()
        kwok_cluster.apply(agent("rbac-check", replicas=2), ns)
        ready(kwok_cluster, "rbac-check", ns, 2)
        kwok_cluster.kubectl("scale", "voiceagent/rbac-check", "-n", ns, "--replicas=1")
        ready(kwok_cluster, "rbac-check", ns, 1)
        kwok_cluster.kubectl("delete", "voiceagent", "rbac-check", "-n", ns, "--timeout=60s")
        log = op.log.read_text()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
    finally:
        op.stop()


def test_crd_upgrade_path_is_server_side_apply(kwok_cluster: Cluster) -> None:
    """Helm never upgrades CRDs in crds/: the documented upgrade step must apply cleanly over an install."""
    out = kwok_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    assert "serverside-applied" in out.stdout
    wait_for(
        lambda: kwok_cluster.kubectl("get", "voiceagents", "-A", check=False).returncode == 0,
        timeout=30,
        what="VoiceAgent API still served",
    )
