"""How fast the operator's autoscaler answers a load step (KWOK control plane, real Redis).

Alternates load steps up and down on one VoiceAgent (autoscaling on, no
stabilization window) and measures, from the moment the registry shows the new
load: the scale decision (spec.replicas written through the scale subresource),
the Deployment patch (spec.replicas of the Deployment), and all pods Ready.
Target (DESIGN.md): decision and Deployment patch within 5 s.

    python -m bench.autoscaler_reaction [--steps 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import print_records, write_json
from tests.support.net import free_port
from tests.support.registry import Heartbeats
from voicefleet_operator.devcluster import REPO, KwokCluster, kube_bin_dir

NS = "default"
NAME = "elastic"
POLICY = {
    "enabled": True,
    "minReplicas": 1,
    "maxReplicas": 10,
    "sessionsPerPod": 10,
    "bufferSessions": 0,
    "scaleDownStabilizationSeconds": 0,
}


def get(cluster: KwokCluster, kind: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, NAME, "-n", NS, "-o", "json", check=False)
    return dict(json.loads(out.stdout)) if out.returncode == 0 else {"spec": {}, "status": {}, "metadata": {}}


def until(what: str, check: Any, timeout: float = 60) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    cluster = KwokCluster("vf-autoscale", kube_bin_dir(), Path(tempfile.mkdtemp(prefix="vf-bench-")))
    cluster.create(nodes=3)
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", ""], stdout=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    operator = cluster.start_operator(url, cluster.workdir / "operator.log")
    rows = []
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        until("CRD served", lambda: cluster.kubectl("get", "va", check=False).returncode == 0)
        body = {
            "apiVersion": "voicefleet.io/v1alpha1",
            "kind": "VoiceAgent",
            "metadata": {"name": NAME},
            "spec": {"replicas": 1, "autoscaling": POLICY},
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
        until("first pod", lambda: get(cluster, "deployment").get("status", {}).get("readyReplicas") == 1)
        with Heartbeats(url, NS, NAME, capacity=10) as beats:
            for step in range(args.steps):
                sessions = 75 if step % 2 == 0 else 5
                want = -(-sessions // 10)
                t0 = time.monotonic()
                beats.set({f"{NAME}-pod": sessions})
                t_decide = until(
                    "decision", lambda w=want: get(cluster, "voiceagent")["spec"].get("replicas") == w
                )
                t_patch = until(
                    "deployment patch", lambda w=want: get(cluster, "deployment")["spec"].get("replicas") == w
                )
                t_ready = until(
                    "pods ready",
                    lambda w=want: (
                        get(cluster, "deployment").get("status", {}).get("readyReplicas", 0) == w
                        and get(cluster, "deployment").get("status", {}).get("replicas") == w
                    ),
                )
                rows.append(
                    {
                        "step": "up" if want > 1 else "down",
                        "sessions": sessions,
                        "replicas": want,
                        "decision_s": round(t_decide - t0, 2),
                        "deployment_patch_s": round(t_patch - t0, 2),
                        "all_ready_s": round(t_ready - t0, 2),
                    }
                )
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        redis.terminate()
        cluster.delete()
    print_records(rows)
    patch = [float(r["deployment_patch_s"]) for r in rows]
    summary = {"patch_p50_s": statistics.median(patch), "patch_max_s": max(patch)}
    print(f"Deployment patch after a load step: median {summary['patch_p50_s']} s, max {max(patch)} s")
    write_json(args.json, {"benchmark": "autoscaler_reaction", "rows": rows, **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
