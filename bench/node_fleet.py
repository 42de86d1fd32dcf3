"""The fleet on a real node: Helm install -> first answered call, and a rollout under live calls.

Brings up the local control plane with the real node (kubelet, containerd, kube-proxy, CoreDNS;
needs root), then measures:

1. `helm install` (operator, Redis, a VoiceAgent) -> the first call answered through the agent
   Service: with the image not yet on the node ("cold": imported during the measurement) and
   with it already there ("warm", after `helm uninstall`). hack/images.sh builds the image
   beforehand (its own cold/warm time is printed too).
2. A rollout (`kubectl rollout restart`) of 5 agent pods carrying 100 live gRPC calls that would
   last 30 minutes (the pods' drain deadline is 30 minutes too): each draining pod moves its calls
   to other pods at quiet moments (live call migration). Reported: time to complete, calls dropped,
   calls moved, the caller's switch time (offer -> started on the new pod), the gap each call was
   deaf for (old pod stops listening -> new pod listens, from MigrationCompleted), and how long
   callers waited for each answer while it ran (text sent -> final answer).

    python -m bench.node_fleet [--pods 5] [--calls 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.report import percentile, print_records, write_json
from tests.chaos.harness import Caller, Channels, Stats, run_callers
from tests.node.test_calls import ServiceFleet, agent_spec
from tests.support.kube import Cluster
from tests.support.node import Release
from tests.support.wait import async_wait_for
from voicefleet_operator.devcluster import REPO, KwokCluster, kube_bin_dir
from voicefleet_operator.devnode import (
    RealNode,
    build_images,
    chart_values,
    pod_placement,
    project_image,
    project_images,
)

CHART = REPO / "helm" / "voicefleet"
AGENT = "bench"
LONG_CALL_SECONDS = 1800


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def _true(value: bool) -> bool:
    return value


def _install(cluster: KwokCluster, ns: str, values: dict[str, Any], workdir: Path, pods: int) -> None:
    path = workdir / "values.json"
    path.write_text(json.dumps(values))
    cluster.helm("install", "vf", str(CHART), "-n", ns, "--create-namespace", "-f", str(path), "--wait",
                 "--timeout", "300s", timeout=360)  # fmt: skip
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    spec = {**agent_spec(pods), "image": image, **pod_placement()}
    spec["prompt"] = {"inline": "Echo the caller.", "version": "v1"}
    spec["autoscaling"] = {"enabled": False, "sessionsPerPod": 40}
    # Calls as long as the drain deadline: without migration a rollout would wait for them.
    spec["session"] = {
        "drainTimeoutSeconds": LONG_CALL_SECONDS,
        "idleTimeoutSeconds": 120,
        "maxDurationSeconds": 2 * LONG_CALL_SECONDS,
        "migration": {"enabled": True, "crossRevision": True},
    }
    manifest = {"apiVersion": "voicefleet.io/v1alpha1", "kind": "VoiceAgent",
                "metadata": {"name": AGENT, "namespace": ns}, "spec": spec}  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


async def _first_call(release: Release) -> float:
    """Until one call is answered through the agent Service; returns when."""
    await async_wait_for(
        lambda: asyncio.to_thread(release.cluster.exists, "service", AGENT, release.namespace),
        timeout=120, interval=0.5, what="the agent Service",
    )  # fmt: skip
    fleet = ServiceFleet([release.service_address(AGENT, "grpc")])
    stats, channels = Stats(), Channels()
    try:
        await Caller("first", fleet, channels, stats, random.Random(0)).session(1, (0, 0))
    finally:
        await channels.close()
    if stats.dropped:
        raise RuntimeError(f"the first call failed: {stats.dropped}")
    return time.monotonic()


async def install_to_first_call(
    cluster: KwokCluster, node: RealNode, images: dict[str, Path], workdir: Path, pods: int, cold: bool
) -> dict[str, Any]:
    ns = "bench-" + uuid.uuid4().hex[:4]
    started = time.monotonic()
    if cold:
        for name in project_images(images):
            node.ctr("images", "import", "--snapshotter", "overlayfs", str(images[name]), timeout=300)
    imported = time.monotonic()
    await asyncio.to_thread(_install, cluster, ns, chart_values(images), workdir, pods)
    installed = time.monotonic()
    release = Release(Cluster(cluster), ns, "vf", project_image(images))
    answered = await asyncio.wait_for(_first_call(release), 300)
    return {
        "image": "cold (imported)" if cold else "warm (on the node)",
        "import_s": round(imported - started, 1),
        "helm_install_wait_s": round(installed - imported, 1),
        "first_call_s": round(answered - started, 1),
        "namespace": ns,
    }


async def rollout_under_calls(release: Release, pods: int, calls: int) -> dict[str, Any]:
    old = await async_wait_for(
        lambda: asyncio.to_thread(release.rolled, AGENT, set(), pods),
        timeout=300, interval=1, what=f"{pods} ready pods",
    )  # fmt: skip
    fleet = ServiceFleet([release.service_address(AGENT, "grpc")])
    stats, channels, stop = Stats(), Channels(), asyncio.Event()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(calls)]
    # A turn every 3-6 s for 30 minutes, unless stopped: no call ends during the rollout.
    long_call = LONG_CALL_SECONDS // 4
    task = asyncio.ensure_future(
        run_callers(callers, [c.session(long_call, think=(3.0, 6.0), stop=stop) for c in callers])
    )
    try:
        await async_wait_for(lambda: _true(stats.live >= calls), timeout=120, what="live calls")
        answers_before = len(stats.answer_seconds)
        started = time.monotonic()
        restart = ("rollout", "restart", f"deployment/{AGENT}", "-n", release.namespace)
        await asyncio.to_thread(release.cluster.kubectl, *restart)
        await async_wait_for(
            lambda: asyncio.to_thread(release.rolled, AGENT, old, pods),
            timeout=900,
            interval=0.5,
            what="rollout",
        )
        duration = time.monotonic() - started
        during = stats.answer_seconds[answers_before:]
        stop.set()
        await asyncio.wait_for(task, 180)
    finally:
        stop.set()
        await channels.close()
    return {
        "pods": pods,
        "live_calls": calls,
        "rollout_s": round(duration, 1),
        "calls_completed": stats.sessions_completed,
        "calls_dropped": len(stats.dropped),
        "dropped_reasons": stats.dropped[:10],
        "resumes": stats.resumes,
        "moved": stats.migrations,
        "move_failed": stats.migrations_failed,
        "switch_p50_ms": _ms(percentile(stats.switch_seconds, 0.5)),
        "switch_p99_ms": _ms(percentile(stats.switch_seconds, 0.99)),
        "gap_p50_ms": _ms(percentile(stats.gap_seconds, 0.5)),
        "gap_p99_ms": _ms(percentile(stats.gap_seconds, 0.99)),
        "gap_max_ms": _ms(max(stats.gap_seconds, default=0.0)),
        "answer_wait_p50_ms": round(percentile(during, 0.5) * 1000, 1),
        "answer_wait_p99_ms": round(percentile(during, 0.99) * 1000, 1),
        "answer_wait_max_ms": round(max(during, default=0.0) * 1000, 1),
    }


async def measure(
    cluster: KwokCluster, node: RealNode, images: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    cold = await install_to_first_call(cluster, node, images, cluster.workdir, args.pods, cold=True)
    # The VoiceAgent first: its finalizer needs the operator that the uninstall removes.
    await asyncio.to_thread(cluster.kubectl, "delete", "voiceagent", AGENT, "-n", cold["namespace"])
    await asyncio.to_thread(cluster.helm, "uninstall", "vf", "-n", cold["namespace"], "--wait")
    warm = await install_to_first_call(cluster, node, images, cluster.workdir, args.pods, cold=False)
    release = Release(Cluster(cluster), warm["namespace"], "vf", project_image(images))
    rollout = await rollout_under_calls(release, args.pods, args.calls)
    return {"install": [cold, warm], "rollout": rollout}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    started = time.monotonic()
    images = build_images()  # hack/images.sh: cached by a hash of its inputs
    images_s = time.monotonic() - started
    workdir = Path(tempfile.mkdtemp(prefix="vf-bench-node-"))
    cluster = KwokCluster(name=f"bench-{uuid.uuid4().hex[:4]}", bin_dir=kube_bin_dir(), workdir=workdir)
    cluster.create(nodes=1)
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    node = RealNode(cluster, workdir / "node")
    try:
        node.up({k: v for k, v in images.items() if k not in project_images(images)})  # those come later
        result = {"images_sh_s": round(images_s, 1), **asyncio.run(measure(cluster, node, images, args))}
        _report(result)  # before the teardown, which takes a while
        write_json(args.json, result)
    finally:
        node.down()
        cluster.delete()


def _report(result: dict[str, Any]) -> None:
    print(f"hack/images.sh (this run): {result['images_sh_s']} s")
    print_records([{k: v for k, v in r.items() if k != "namespace"} for r in result["install"]])
    print()
    print_records([{k: v for k, v in result["rollout"].items() if k != "dropped_reasons"}])
    for reason in result["rollout"]["dropped_reasons"]:
        print("dropped:", reason)


if __name__ == "__main__":
    main()
