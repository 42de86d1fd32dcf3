"""A real local Kubernetes control plane with fake (KWOK) nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local
processes (kwokctl's binary runtime) from binaries built once from the Go
module proxy by hack/kube-binaries.sh; the KWOK controller plays the kubelets,
so Deployments, ReplicaSets, Pods, scaling and rollouts really happen, without
containers. Used by the e2e tests, the benchmarks and `voicefleet-operator dev up`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# Addresses of the real node (devnode.py). The API server advertises the node's address
# so that pods there reach it through the `kubernetes` Service.
NODE_IP = "10.234.0.1"
POD_CIDR = "10.234.0.0/24"
SERVICE_CIDR = "10.235.0.0/16"
KUBERNETES_SERVICE_IP = "10.235.0.1"
KWOK_POD_CIDR = "10.0.0.0/24"  # the KWOK controller's fake pod IPs (its default)


def control_plane_config() -> dict[str, Any]:
    """kwokctl settings that let a real node join beside the fake ones (see devnode.py)."""

    def args(**flags: str) -> list[dict[str, Any]]:
        # override replaces a flag kwokctl already passes (and only such a flag); others are added.
        given = {"manage_all_nodes"}
        return [{"key": k.replace("_", "-"), "value": v, "override": k in given} for k, v in flags.items()]

    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        # In-cluster clients on the real node dial the `kubernetes` Service IP over TLS.
        "options": {"kubeApiserverCertSANs": [KUBERNETES_SERVICE_IP, NODE_IP]},
        "componentsPatches": [
            # Pods on the real node reach the API server through its advertised address.
            {
                "name": "kube-apiserver",
                "extraArgs": args(
                    advertise_address=NODE_IP,
                    service_cluster_ip_range=SERVICE_CIDR,
                    # Logs, exec and port-forward dial the node's IP, never a name to resolve.
                    kubelet_preferred_address_types="InternalIP",
                ),
            },
            {"name": "kube-controller-manager", "extraArgs": args(service_cluster_ip_range=SERVICE_CIDR)},
            # The KWOK controller plays kubelet only for its own nodes, never for the real one.
            {
                "name": "kwok-controller",
                "extraArgs": args(
                    manage_all_nodes="false", manage_nodes_with_annotation_selector="kwok.x-k8s.io/node=fake"
                ),
            },
        ],
    }


def kube_bin_dir() -> Path:
    """The pinned binaries: $VOICEFLEET_KUBE_BIN, else built or found by hack/kube-binaries.sh."""
    if env := os.environ.get("VOICEFLEET_KUBE_BIN"):
        return Path(env)
    script = REPO / "hack" / "kube-binaries.sh"
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class KwokCluster:
    name: str
    bin_dir: Path
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KWOK_WORKDIR": str(self.workdir / "kwok"),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def _run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), env=self.env(), check=check, capture_output=True, text=True, timeout=timeout
        )

    def create(self, nodes: int = 3) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.delete()
        b = self.bin_dir
        config = self.workdir / "kwokctl.yaml"
        config.write_text(yaml.safe_dump_all([control_plane_config()]))
        self._run(
            str(b / "kwokctl"),
            "--config",
            str(config),
            "create",
            "cluster",
            "--name",
            self.name,
            "--runtime",
            "binary",
            "--kube-apiserver-binary",
            str(b / "kube-apiserver"),
            "--kube-controller-manager-binary",
            str(b / "kube-controller-manager"),
            "--kube-scheduler-binary",
            str(b / "kube-scheduler"),
            "--kwok-controller-binary",
            str(b / "kwok"),
            "--etcd-binary",
            str(b / "etcd"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--disable-qps-limits",
            "--wait",
            "3m",
        )
        self.scale_nodes(nodes)

    def scale_nodes(self, nodes: int) -> None:
        self._run(
            str(self.bin_dir / "kwokctl"), "scale", "node", "--name", self.name, "--replicas", str(nodes)
        )

    def delete(self) -> None:
        self._run(str(self.bin_dir / "kwokctl"), "delete", "cluster", "--name", self.name, check=False)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env(),
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )

    def start_operator(
        self,
        redis_url: str,
        log: Path,
        *,
        metrics_port: int = 0,
        health_port: int = 0,
        namespaces: Sequence[str] = (),
        leader_election: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`voicefleet-operator run` against this cluster, as a child process logging to ``log``."""
        args = [
            sys.executable, "-m", "voicefleet_operator.cli", "run",
            "--metrics-port", str(metrics_port or free_port()),
            "--health-port", str(health_port or free_port()),
            "--leader-election" if leader_election else "--no-leader-election",
            *(f"--namespace={ns}" for ns in namespaces),
        ]  # fmt: skip
        full_env = {**self.env(), "VOICEFLEET_DEFAULT_REDIS_URL": redis_url, **(env or {})}
        with log.open("ab") as out:
            return subprocess.Popen(args, env=full_env, stdout=out, stderr=subprocess.STDOUT)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bin_dir / "helm"), *args, check=check, timeout=timeout)


def default_cluster(name: str = "voicefleet") -> KwokCluster:
    cache = Path(os.environ.get("VOICEFLEET_CACHE", Path.home() / ".cache" / "voicefleet"))
    return KwokCluster(name=name, bin_dir=kube_bin_dir(), workdir=cache / "clusters" / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
