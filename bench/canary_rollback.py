"""Time from a canary's metric breach to its rollback, on a real (KWOK) control plane.

A VoiceAgent with a canary at 50%: at t0 its revision's counters (in Redis, where the pods write
them) start showing failing tool calls. Reported per analysis interval:

- ``to_split_cleared``: t0 -> placement's split gone from Redis (no NEW session reaches the canary);
- ``to_rolled_back``: t0 -> status.rollout.phase RolledBack;
- ``to_canary_empty``: t0 -> the canary Deployment at 0 replicas with no pod left (KWOK pods go at
  once; real pods then drain, moving their calls: see bench/migration.py).

The analysis measures once per interval, so the breach waits up to one interval to be seen.

    python -m bench.canary_rollback [--intervals 2 5 10] [--runs 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.revision_stats import latency_bucket_field
from bench.report import percentile, print_records, write_json
from tests.support.net import free_port
from voicefleet_operator.devcluster import REPO, KwokCluster, kube_bin_dir

NAME = "canary-bench"


def manifest(ns: str, interval: int, version: int) -> str:
    spec = {
        "replicas": 2,
        "prompt": {"inline": f"You answer calls, revision {version}.", "version": f"v{version}"},
        "rollout": {
            "strategy": "canary",
            "steps": [{"weight": 50, "pauseSeconds": 3600}],
            "analysis": {"intervalSeconds": interval, "minTurns": 5, "maxToolFailureRate": 0.2},
        },
    }
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": NAME, "namespace": ns},
    }
    return json.dumps({**body, "spec": spec})


def rollout(cluster: KwokCluster, ns: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "voiceagent", NAME, "-n", ns, "-o", "json")
    return dict(json.loads(out.stdout).get("status", {}).get("rollout", {}))


def canary_empty(cluster: KwokCluster, ns: str) -> bool:
    out = cluster.kubectl("get", "deployment", f"{NAME}-canary", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0 or json.loads(out.stdout)["spec"]["replicas"] != 0:
        return False
    pods = cluster.kubectl("get", "pods", "-n", ns, "-l", "voicefleet.io/track=canary", "-o", "name")
    return not pods.stdout.strip()


def _at(status: dict[str, Any], phase: str, weight: int) -> bool:
    return status.get("phase") == phase and status.get("weight") == weight


def wait(condition: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def one_rollback(
    cluster: KwokCluster, client: redis.Redis, ns: str, interval: int, version: int
) -> dict[str, float]:
    keys = AgentKeys(ns, NAME)
    cluster.kubectl("apply", "-f", "-", stdin=manifest(ns, interval, version))
    wait(lambda: _at(rollout(cluster, ns), "Progressing", 50), 120, "the canary at 50%")
    canary = rollout(cluster, ns)["canaryRevision"]
    split_key = keys.rollout
    wait(lambda: client.hget(split_key, "weight") == "50", 30, "the split in Redis")
    t0 = time.monotonic()
    fields = {
        "turns": 20,
        "sessions": 20,
        "tool_calls": 20,
        "tool_failures": 20,
        latency_bucket_field(200): 20,
    }
    for field, n in fields.items():
        client.hincrby(keys.revision_stats(canary), field, n)
    cleared = wait(lambda: not client.exists(split_key), 120, "the split cleared")
    rolled = wait(lambda: rollout(cluster, ns).get("phase") == "RolledBack", 120, "RolledBack")
    empty = wait(lambda: canary_empty(cluster, ns), 120, "the canary emptied")
    return {"to_split_cleared": cleared - t0, "to_rolled_back": rolled - t0, "to_canary_empty": empty - t0}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    cluster = KwokCluster(name="vf-canary-bench", bin_dir=kube_bin_dir(), workdir=workdir)
    cluster.create(nodes=2)
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", ""], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    ns = "canary-bench"
    operator = None
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", ns)
        log = workdir / "operator.log"
        env = {"VOICEFLEET_OBSERVE_INTERVAL": "1", "VOICEFLEET_STATUS_MIN_INTERVAL": "1"}
        operator = cluster.start_operator(f"redis://127.0.0.1:{port}/0", log, namespaces=[ns], env=env)
        version = 1
        cluster.kubectl("apply", "-f", "-", stdin=manifest(ns, args.intervals[0], version))
        wait(lambda: rollout(cluster, ns).get("phase") == "Stable", 120, "the first revision")
        rows = []
        for interval in args.intervals:
            runs = []
            for _ in range(args.runs):
                version += 1
                runs.append(one_rollback(cluster, client, ns, interval, version))
            row: dict[str, Any] = {"analysis_interval_s": interval, "runs": len(runs)}
            for key in ("to_split_cleared", "to_rolled_back", "to_canary_empty"):
                values = [r[key] for r in runs]
                row[f"{key}_p50_s"] = round(percentile(values, 0.5), 2)
                row[f"{key}_max_s"] = round(max(values), 2)
            rows.append(row)
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=60)
        client.close()
        server.terminate()
        cluster.delete()
    print_records(rows)
    write_json(args.json, {"benchmark": "canary_rollback", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
