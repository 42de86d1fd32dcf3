"""The Helm chart: lint, render, install on the KWOK cluster, and run the operator with the chart's RBAC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_lifecycle import agent, ready
from tests.support.kube import Cluster, OperatorProcess
from tests.support.redis import RedisServer
from tests.support.wait import wait_for
from voicefleet_operator.devcluster import REPO

pytestmark = pytest.mark.e2e

CHART = REPO / "helm" / "voicefleet"
KNOWLEDGE_BASE = {
    "apiVersion": "voicefleet.io/v1alpha1",
    "kind": "KnowledgeBase",
    "metadata": {"name": "faq"},
    "spec": {"sources": [{"name": "faq", "configMap": {"name": "faq-docs"}}]},
}
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
        "PodMonitor",
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


def test_rbac_renders_per_namespace_unless_cluster_wide(kwok_cluster: Cluster) -> None:
    def rbac(*sets: str) -> tuple[list[dict[str, Any]], list[str]]:
        args = ["-n", "rel", "--kube-version", "1.35.0", *(f"--set={s}" for s in sets)]
        out = kwok_cluster.kwok.helm("template", "vf", str(CHART), *args)
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        operator = next(d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"])
        command = operator["spec"]["template"]["spec"]["containers"][0]["command"]
        bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
        return bindings, [c for c in command if c.startswith("--namespace")]

    def agent_grants(bindings: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted(
            (b["kind"], b["metadata"].get("namespace", "*"))
            for b in bindings
            if b["roleRef"]["name"] == "vf-voicefleet-operator-agents"
        )

    bindings, flags = rbac()
    assert agent_grants(bindings) == [("RoleBinding", "rel")] and flags == ["--namespace=rel"]
    bindings, flags = rbac("operator.watchNamespaces={a,b}")
    assert agent_grants(bindings) == [("RoleBinding", "a"), ("RoleBinding", "b")]
    assert flags == ["--namespace=a", "--namespace=b"]
    bindings, flags = rbac("operator.clusterWide=true")
    assert agent_grants(bindings) == [("ClusterRoleBinding", "*")] and flags == []
    both = kwok_cluster.kwok.helm(
        "template", "vf", str(CHART), "--kube-version", "1.35.0",
        "--set", "operator.clusterWide=true", "--set", "operator.watchNamespaces={a}", check=False,
    )  # fmt: skip
    assert both.returncode != 0 and "exclude each other" in both.stderr


@dataclass(frozen=True)
class Release:
    namespace: str  # the operator, Redis and the leader Lease
    agents: str  # the namespace the operator manages (operator.watchNamespaces)


@pytest.fixture(scope="module")
def release(kwok_cluster: Cluster) -> Iterator[Release]:
    ns, agents = kwok_cluster.create_namespace(), kwok_cluster.create_namespace()
    kwok_cluster.kwok.helm(
        "install", "vf", str(CHART), "-n", ns, "--set", f"operator.watchNamespaces={{{agents}}}",
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    yield Release(ns, agents)
    kwok_cluster.kwok.helm("uninstall", "vf", "-n", ns, check=False)


def test_install_runs_operator_and_redis(kwok_cluster: Cluster, release: Release) -> None:
    ns = release.namespace
    deployments = {d["metadata"]["name"]: d for d in kwok_cluster.get("deployments", namespace=ns)["items"]}
    assert set(deployments) == {"vf-voicefleet-operator", "vf-voicefleet-redis"}
    for dep in deployments.values():
        assert dep["status"].get("readyReplicas") == 1
    op = deployments["vf-voicefleet-operator"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in op["env"]}
    assert env["VOICEFLEET_DEFAULT_REDIS_URL"] == f"redis://vf-voicefleet-redis.{ns}.svc:6379/0"
    assert f"--namespace={release.agents}" in op["command"]


def test_rbac_is_least_privilege(kwok_cluster: Cluster, release: Release) -> None:
    """Asked of the real API server's authorizer, as the operator's ServiceAccount."""
    sa = f"system:serviceaccount:{release.namespace}:vf-voicefleet-operator"
    other = kwok_cluster.create_namespace()  # holds no VoiceAgents of this release

    def can(verb: str, resource: str, ns: str) -> bool:
        # "kind/sub" is a subresource (kubectl would read "sub" as an object's name).
        kind, _, sub = resource.partition("/")
        args = [kind, *(["--subresource", sub] if sub else [])]
        out = kwok_cluster.kubectl("auth", "can-i", verb, *args, "-n", ns, "--as", sa, check=False)
        return out.stdout.strip() == "yes"

    needed = [
        ("patch", "voiceagents.voicefleet.io"),
        ("watch", "voiceagents.voicefleet.io"),
        ("patch", "voiceagents.voicefleet.io/status"),
        ("patch", "voiceagents.voicefleet.io/scale"),
        ("create", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("watch", "pods"),
        ("patch", "pods"),
        ("watch", "configmaps"),
        ("create", "services"),
        ("create", "events"),
        ("get", "secrets"),
        ("create", "secrets"),
        ("create", "poddisruptionbudgets.policy"),
        ("create", "jobs.batch"),  # eval Jobs against canaries
        ("watch", "jobs.batch"),
        ("watch", "knowledgebases.voicefleet.io"),
        ("patch", "knowledgebases.voicefleet.io/status"),
        ("create", "statefulsets.apps"),  # a KnowledgeBase's server
        ("get", "services/proxy"),  # its GET /v1/status
        ("create", "services/proxy"),  # its POST /v1/sync (a backfill by annotation)
    ]
    for verb, resource in needed:
        assert can(verb, resource, release.agents), f"operator cannot {verb} {resource}"
    for verb, resource in needed:  # a namespace it does not manage: nothing at all
        assert not can(verb, resource, other), f"operator may {verb} {resource} in an unmanaged namespace"
    for verb, resource in [
        ("delete", "deployments.apps"),
        ("list", "secrets"),
        ("update", "secrets"),
        ("get", "pods"),
        ("delete", "pods"),
        ("create", "pods/eviction"),
        ("delete", "voiceagents.voicefleet.io"),
        ("delete", "jobs.batch"),
        ("delete", "statefulsets.apps"),
        ("create", "pods/proxy"),
    ]:
        assert not can(verb, resource, release.agents), f"operator may {verb} {resource}, more than it needs"
    assert not can("create", "clusterrolebindings", "default")
    assert not can("patch", "nodes", "default")
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io", "default")  # kopf's discovery
    assert can("update", "leases.coordination.k8s.io", release.namespace)
    assert not can("update", "leases.coordination.k8s.io", "kube-system")
    assert not can("update", "leases.coordination.k8s.io", release.agents)


def test_operator_works_with_only_the_charts_rbac(
    kwok_cluster: Cluster, release: Release, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Runs the operator with the chart ServiceAccount's token and the chart's namespaces: everything
    it does must be allowed, and a VoiceAgent elsewhere is not its business."""
    token = kwok_cluster.kubectl(
        "create", "token", "vf-voicefleet-operator", "-n", release.namespace
    ).stdout.strip()
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
        kwok_cluster,
        redis_server.url,
        extra_env={"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": release.namespace},
        namespaces=[release.agents],
    )
    op.start(leader_election=True, identity="chart-rbac")
    try:
        ns, other = release.agents, kwok_cluster.create_namespace()
        kwok_cluster.apply(agent("elsewhere", replicas=1), other)
        kwok_cluster.apply(agent("rbac-check", replicas=2), ns)
        kwok_cluster.apply(json.dumps(KNOWLEDGE_BASE), ns)
        ready(kwok_cluster, "rbac-check", ns, 2)
        # Its children applied and its server asked for its status (no server runs on KWOK: unreachable).
        wait_for(
            lambda: "ServerUnreachable" in json.dumps(kwok_cluster.get("kb", "faq", ns).get("status", {})),
            timeout=60,
            what="the KnowledgeBase's status",
        )
        assert kwok_cluster.exists("statefulset", "kb-faq", ns)
        kwok_cluster.kubectl("scale", "voiceagent/rbac-check", "-n", ns, "--replicas=1")
        ready(kwok_cluster, "rbac-check", ns, 1)
        kwok_cluster.kubectl("delete", "voiceagent", "rbac-check", "-n", ns, "--timeout=60s")
        assert not kwok_cluster.exists("deployment", "elsewhere", other)
        assert "status" not in kwok_cluster.get("voiceagent", "elsewhere", other)
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
