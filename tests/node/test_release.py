"""The chart on the real node: the project's images run, pods reach each other by name, nothing leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.kube import Cluster
from tests.support.node import Release
from voicefleet_operator.devcluster import KWOK_POD_CIDR, POD_CIDR, SERVICE_CIDR
from voicefleet_operator.devnode import GUARD_CHAIN, NODE_NAME, RealNode, operator_image

pytestmark = pytest.mark.e2e


def test_operator_and_redis_run_from_their_images_on_the_real_node(
    fleet_release: Release, node_images: dict[str, Path]
) -> None:
    for component in ("operator", "redis"):
        pods = fleet_release.ready_pods(f"app.kubernetes.io/component={component}")
        assert len(pods) == 1, component
        pod = pods[0]
        assert pod["spec"]["nodeName"] == NODE_NAME
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"], status
        assert pod["status"]["podIP"].startswith(POD_CIDR.rsplit(".", 2)[0])
    operator = fleet_release.ready_pods("app.kubernetes.io/component=operator")[0]
    # The operator runs the Dockerfile's operator target, not the agent pods' image.
    assert operator["spec"]["containers"][0]["image"] == operator_image(node_images) != fleet_release.image
    assert operator["spec"]["serviceAccountName"] == "vf-voicefleet-operator"
    # The operator talks to the API server with only its ServiceAccount (in-cluster config):
    # its logs (read through the kubelet) show it reconciling, not failing to authenticate.
    logs = fleet_release.cluster.kubectl(
        "logs", "-n", fleet_release.namespace, operator["metadata"]["name"]
    ).stdout
    assert "Forbidden" not in logs and "Unauthorized" not in logs
    assert "leader" in logs.lower()


def test_pods_resolve_services_by_name(fleet_release: Release) -> None:
    operator = fleet_release.ready_pods("app.kubernetes.io/component=operator")[0]
    redis_ip = fleet_release.service_address("vf-voicefleet-redis", "redis").split(":")[0]
    script = (
        "import json, socket; "
        "print(json.dumps([socket.gethostbyname(n) for n in "
        "('vf-voicefleet-redis', 'kubernetes.default.svc.cluster.local')]))"
    )
    out = fleet_release.cluster.kubectl(
        "exec", "-n", fleet_release.namespace, operator["metadata"]["name"], "--", "python", "-c", script,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)
    kubernetes_ip = fleet_release.cluster.get("service", "kubernetes", namespace="default")["spec"][
        "clusterIP"
    ]
    assert resolved == [redis_ip, kubernetes_ip]


def test_cluster_addresses_are_dropped_off_the_node(real_node: RealNode, kwok_cluster: Cluster) -> None:
    rules = real_node.guard_rules()
    for cidr in (POD_CIDR, SERVICE_CIDR, KWOK_POD_CIDR):
        assert f"-d {cidr} -j DROP" in rules and f"-s {cidr} -j DROP" in rules
    # The guard sees every packet that leaves: it is the first rule of mangle POSTROUTING.
    out = real_node.iptables("-t", "mangle", "-S", "POSTROUTING")
    first = next(line for line in out.splitlines() if line.startswith("-A"))
    assert first == f"-A POSTROUTING -j {GUARD_CHAIN}"
    node = kwok_cluster.get("node", NODE_NAME)
    assert node["metadata"]["labels"]["voicefleet.io/node"] == "real"
    assert any(t["key"] == "voicefleet.io/real-node" for t in node["spec"]["taints"])
