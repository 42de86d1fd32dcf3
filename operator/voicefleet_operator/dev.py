"""`voicefleet-operator dev up|down`: the whole fleet on one machine.

Starts a local control plane (real etcd, kube-apiserver, controller-manager and
scheduler) with fake KWOK nodes and one real node (kubelet, containerd, kube-proxy,
CoreDNS; needs root), builds the project's image from its Dockerfile, installs the
Helm chart onto the real node (operator pod, Redis pod, the example VoiceAgent), and
prints a URL where a person talks to the agent. Ctrl-C tears everything down.
With --no-real-node: KWOK nodes only, the operator and Redis as local processes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .devcluster import REPO, KwokCluster, default_cluster, free_port
from .devnode import RealNode, build_images, chart_values

EXAMPLE = REPO / "examples" / "voiceagent.yaml"
NAMESPACE = "voicefleet"


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _status(cluster: KwokCluster, name: str, namespace: str = "default") -> dict[str, Any]:
    out = cluster.kubectl("get", "voiceagent", name, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status", {})) if out.returncode == 0 else {}


def _ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def up_real(cluster: KwokCluster, nodes: int, port: int) -> int:
    """Control plane + real node + the chart; the example agent answers at a local URL."""
    print(f"starting the control plane {cluster.name!r} ({nodes} fake nodes) ...", flush=True)
    cluster.create(nodes=nodes)
    print("building the images from the Dockerfile (cached; the first build takes minutes) ...", flush=True)
    images = build_images()
    node = RealNode(cluster, cluster.workdir / "node")
    forward: subprocess.Popen[bytes] | None = None
    try:
        print("starting the real node (containerd, kubelet, kube-proxy, CoreDNS) ...", flush=True)
        node.up(images)
        values = node.workdir / "values.json"
        chart = chart_values(images)
        chart["example"].update(enabled=True, replicas=2)
        values.write_text(json.dumps(chart))
        print("helm install voicefleet (operator, Redis, example VoiceAgent) ...", flush=True)
        cluster.helm(
            "install", "voicefleet", str(REPO / "helm" / "voicefleet"), "-n", NAMESPACE, "--create-namespace",
            "-f", str(values), "--wait", "--timeout", "300s", timeout=360,
        )  # fmt: skip
        _wait(
            "the example VoiceAgent to serve",
            lambda: _serving(_status(cluster, "receptionist", NAMESPACE)),
            300,
        )
        log = cluster.workdir / "port-forward.log"
        with log.open("ab") as out:
            forward = subprocess.Popen(
                [str(cluster.bin_dir / "kubectl"), "port-forward", "-n", NAMESPACE, "svc/receptionist",
                 f"{port}:8080", "--address", "127.0.0.1"],
                env=cluster.env(), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        print(cluster.kubectl("get", "voiceagents,pods", "-n", NAMESPACE, "-o", "wide").stdout)
        print(
            f"Talk to the receptionist: http://127.0.0.1:{port}/\n"
            "In another shell:\n"
            f"  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH\n"
            f"  kubectl get va -n {NAMESPACE} -w      # SESSIONS and CAPACITY from the live pods\n"
            f"  kubectl rollout restart deployment/receptionist -n {NAMESPACE}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        return _follow(forward, f"kubectl port-forward (log: {log})")
    except KeyboardInterrupt:
        return 0
    finally:
        if forward is not None and forward.poll() is None:
            forward.terminate()
            forward.wait(timeout=10)
        node.down()
        cluster.delete()


def _follow(process: subprocess.Popen[bytes], what: str) -> int:
    """Until Ctrl-C or SIGTERM (0), or until ``process`` dies (1)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    try:
        while process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    print(f"{what} exited with {process.returncode}", file=sys.stderr)
    return 1


def _serving(status: dict[str, Any]) -> bool:
    return _ready(status) and bool(status.get("capacity"))


def up(cluster: KwokCluster, nodes: int) -> int:
    print(f"starting KWOK cluster {cluster.name!r} ({nodes} fake nodes) ...", flush=True)
    cluster.create(nodes=nodes)
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    _wait("the VoiceAgent API", lambda: cluster.kubectl("get", "va", check=False).returncode == 0, 60)

    processes: list[subprocess.Popen[bytes]] = []
    redis_url = ""
    if redis := shutil.which("redis-server"):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", ""], stdout=subprocess.DEVNULL
            )
        )
        redis_url = f"redis://127.0.0.1:{port}/0"
    else:
        print("redis-server not found: session counts will show as unavailable", flush=True)
    log = Path(cluster.workdir) / "operator.log"
    operator = cluster.start_operator(redis_url or "redis://127.0.0.1:1/0", log)
    processes.append(operator)
    try:
        cluster.kubectl("apply", "-f", str(EXAMPLE))
        _wait("the example VoiceAgent to be Ready", lambda: _ready(_status(cluster, "receptionist")), 120)
        print(cluster.kubectl("get", "voiceagents,deployments,pods,services").stdout)
        print(
            "The control plane is up. In another shell:\n"
            f"  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH\n"
            "  kubectl get va -w                      # the fleet\n"
            "  kubectl scale va/receptionist --replicas=5\n"
            f"Operator log: {log}\nCtrl-C stops everything.",
            flush=True,
        )
        return _follow(operator, f"the operator (log: {log})")
    except KeyboardInterrupt:
        return 0
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=30)
        cluster.delete()


def dev_command(args: argparse.Namespace) -> int:
    cluster = default_cluster(args.name)
    if args.action == "down":
        RealNode(cluster, cluster.workdir / "node").down()
        cluster.delete()
        return 0
    if args.real_node:
        return up_real(cluster, args.nodes, args.port)
    return up(cluster, args.nodes)
