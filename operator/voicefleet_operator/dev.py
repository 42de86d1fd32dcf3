"""`voicefleet-operator dev up|down`: the whole control plane on one machine.

Starts a KWOK cluster (real etcd, kube-apiserver, controller-manager and
scheduler; fake nodes), a Redis for session counts, the operator, and applies
the example VoiceAgent; then follows the fleet until Ctrl-C, which tears it down.
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

from .devcluster import REPO, KwokCluster, default_cluster, free_port

EXAMPLE = REPO / "examples" / "voiceagent.yaml"


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _ready(cluster: KwokCluster, name: str) -> bool:
    out = cluster.kubectl("get", "voiceagent", name, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conds = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


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
        _wait("the example VoiceAgent to be Ready", lambda: _ready(cluster, "receptionist"), 120)
        print(cluster.kubectl("get", "voiceagents,deployments,pods,services").stdout)
        print(
            "The control plane is up. In another shell:\n"
            f"  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH\n"
            "  kubectl get va -w                      # the fleet\n"
            "  kubectl scale va/receptionist --replicas=5\n"
            f"Operator log: {log}\nCtrl-C stops everything.",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
        while operator.poll() is None:
            time.sleep(1)
        print(f"the operator exited with {operator.returncode}; see {log}", file=sys.stderr)
        return 1
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
        cluster.delete()
        return 0
    return up(cluster, args.nodes)
