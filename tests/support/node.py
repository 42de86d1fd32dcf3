"""The real worker node for e2e tests, and the Helm release that runs the fleet on it.

``real_node`` (one per test session) joins a real kubelet + containerd + kube-proxy +
CoreDNS node to the session's KWOK control plane with the project's images loaded; at the
end it is taken down and the test fails if anything of it is left on the machine.
``fleet_release`` installs the chart onto that node: the operator as a pod with only its
ServiceAccount, Redis from the chart, and whatever VoiceAgents a test applies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicefleet_operator.devcluster import REPO
from voicefleet_operator.devnode import RealNode, build_images, chart_values, pod_placement

from .kube import Cluster
from .wait import wait_for

CHART = REPO / "helm" / "voicefleet"


@pytest.fixture(scope="session")
def node_images() -> dict[str, Path]:
    return build_images()


@pytest.fixture(scope="session")
def real_node(
    kwok_cluster: Cluster, node_images: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNode]:
    node = RealNode(kwok_cluster.kwok, tmp_path_factory.mktemp("node") / "vf-node")
    try:
        node.up(node_images)
        yield node
    finally:
        node.down()
    left = node.leftovers()
    assert not left, f"the real node left these behind: {left}"


@dataclass
class Release:
    cluster: Cluster
    namespace: str
    name: str
    image: str

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get("pods", namespace=self.namespace)["items"]
        want = dict(kv.split("=", 1) for kv in selector.split(","))
        return [p for p in items if want.items() <= p["metadata"].get("labels", {}).items()]

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        return [
            p for p in self.pods(selector) if _pod_ready(p) and not p["metadata"].get("deletionTimestamp")
        ]

    def agent_pods(self, agent: str, ready: bool = False) -> set[str]:
        selector = f"voicefleet.io/agent={agent}"
        pods = self.ready_pods(selector) if ready else self.pods(selector)
        return {p["metadata"]["name"] for p in pods}

    def rolled(self, agent: str, old: set[str], replicas: int) -> set[str]:
        """The new pods once ``replicas`` are Ready, none of them from ``old``, and every old pod is
        gone; empty until then."""
        ready, every = self.agent_pods(agent, ready=True), self.agent_pods(agent)
        return ready if len(ready) == replicas and not every & old and ready == every else set()

    def agent(self, name: str) -> dict[str, Any]:
        return self.cluster.get("voiceagent", name, namespace=self.namespace)

    def service_address(self, name: str, port: str) -> str:
        svc = self.cluster.get("service", name, namespace=self.namespace)
        number = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == port)
        return f"{svc['spec']['clusterIP']}:{number}"

    def apply_agent(self, name: str, spec: dict[str, Any]) -> None:
        manifest = {
            "apiVersion": "voicefleet.io/v1alpha1",
            "kind": "VoiceAgent",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"image": self.image, **pod_placement(), **spec},
        }
        self.cluster.apply(yaml.safe_dump(manifest), namespace=self.namespace)

    def wait_agent_serving(self, name: str, replicas: int, timeout: float = 240) -> dict[str, Any]:
        """Until ``replicas`` agent pods are Ready and the VoiceAgent reports their capacity."""

        def serving() -> dict[str, Any] | None:
            agent = self.agent(name)
            status = agent.get("status", {})
            pods = self.ready_pods(f"voicefleet.io/agent={name}")
            if len(pods) == replicas and status.get("readyReplicas") == replicas and status.get("capacity"):
                return agent
            return None

        return wait_for(serving, timeout=timeout, interval=1, what=f"{replicas} serving pods of {name}")


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="session")
def fleet_release(
    kwok_cluster: Cluster, real_node: RealNode, node_images: dict[str, Path]
) -> Iterator[Release]:
    """The chart installed onto the real node (operator + Redis), once per test session."""
    ns = "vf-" + uuid.uuid4().hex[:6]
    kwok_cluster.kubectl("create", "namespace", ns)
    values = chart_values(node_images)
    values_file = real_node.workdir / "values.json"
    values_file.write_text(json.dumps(values))
    kwok_cluster.kwok.helm(
        "install", "vf", str(CHART), "-n", ns, "-f", str(values_file), "--wait", "--timeout", "240s",
        timeout=300,
    )  # fmt: skip
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    try:
        yield Release(kwok_cluster, ns, "vf", image)
    finally:
        kwok_cluster.kwok.helm("uninstall", "vf", "-n", ns, "--wait", check=False)
        kwok_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
