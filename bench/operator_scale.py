"""The operator at fleet scale on a real (KWOK) control plane.

Applies N VoiceAgents of R replicas each at once, then reports the time until
every one is Ready, the operator's peak memory (VmHWM), and, over a quiet
steady-state window, the state-check duration p99 and the status patches per
VoiceAgent per 5 s (targets in DESIGN.md: p99 < 1 s, RSS < 150 MB, <= 1 patch).

    python -m bench.operator_scale [--agents 50 200] [--replicas 1] [--steady 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import bucket_quantile, print_records, write_json
from tests.support.net import free_port
from voicefleet_operator.devcluster import REPO, KwokCluster, kube_bin_dir

PODS_PER_NODE = 100
OBSERVE = "voicefleet_operator_observe_seconds"


def manifest(n: int, replicas: int, namespace: str) -> str:
    docs = []
    for i in range(n):
        docs.append(
            json.dumps(
                {
                    "apiVersion": "voicefleet.io/v1alpha1",
                    "kind": "VoiceAgent",
                    "metadata": {"name": f"agent-{i:04d}", "namespace": namespace},
                    "spec": {
                        "replicas": replicas,
                        "prompt": {"inline": f"You are agent {i}.", "version": "bench"},
                    },
                }
            )
        )
    return "\n---\n".join(docs)


def all_ready(cluster: KwokCluster, namespace: str, n: int) -> int:
    out = cluster.kubectl("get", "voiceagents", "-n", namespace, "-o", "json", timeout=120)
    count = 0
    for item in json.loads(out.stdout)["items"]:
        conds = item.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            count += 1
    return count


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) // 1024  # MiB
    return fields


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def buckets(text: str, name: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper bound, from a /metrics scrape."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            out[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def run_one(
    cluster: KwokCluster, agents: int, replicas: int, steady: float, redis_url: str
) -> dict[str, Any]:
    ns = f"bench-{agents}"
    cluster.kubectl("create", "namespace", ns)
    metrics_port = free_port()
    log = Path(tempfile.mkdtemp(prefix="vf-operator-")) / "operator.log"
    operator = cluster.start_operator(redis_url, log, metrics_port=metrics_port, namespaces=[ns])
    try:
        time.sleep(3)  # operator start-up (imports, first watch); not part of the measured window
        started = time.monotonic()
        cluster.kubectl(
            "apply", "--server-side", "-f", "-", stdin=manifest(agents, replicas, ns), timeout=600
        )
        ready = 0
        while ready < agents:
            if operator.poll() is not None:
                raise RuntimeError(f"operator exited; see {log}")
            if time.monotonic() - started > 900:
                raise RuntimeError(f"only {ready}/{agents} Ready after 900 s; see {log}")
            ready = all_ready(cluster, ns, agents)
            time.sleep(1)
        to_ready = time.monotonic() - started
        peak_during_ramp = proc_status(operator.pid)["VmHWM"]

        before = scrape(metrics_port)
        time.sleep(steady)  # a quiet window: every agent is Ready, nothing changes
        after = scrape(metrics_port)
        mem = proc_status(operator.pid)
        patches = counter(after, "voicefleet_operator_status_patches_total") - counter(
            before, "voicefleet_operator_status_patches_total"
        )
        return {
            "agents": agents,
            "replicas_per_agent": replicas,
            "pods": agents * replicas,
            "seconds_to_all_ready": round(to_ready, 1),
            "operator_peak_rss_mib": max(peak_during_ramp, mem["VmHWM"]),
            "operator_rss_mib_steady": mem["VmRSS"],
            "state_check_p99_seconds_upper_bound": bucket_quantile(
                buckets(before, OBSERVE), buckets(after, OBSERVE), 0.99
            ),
            "status_patches_per_agent_per_5s_steady": round(patches / agents / (steady / 5), 3),
        }
    finally:
        operator.terminate()
        operator.wait(timeout=60)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state measured")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    cluster = KwokCluster(name="vf-bench", bin_dir=kube_bin_dir(), workdir=workdir)
    nodes = max(3, math.ceil(max(args.agents) * args.replicas / PODS_PER_NODE) + 1)
    cluster.create(nodes=nodes)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port := free_port()), "--save", ""], stdout=subprocess.DEVNULL
    )
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        time.sleep(2)
        rows = [
            run_one(cluster, n, args.replicas, args.steady, f"redis://127.0.0.1:{port}/0")
            for n in args.agents
        ]
    finally:
        redis.terminate()
        cluster.delete()
    print_records(rows)
    write_json(args.json, {"benchmark": "operator_scale", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
