"""The operator's own availability: leader handover in a rollout, deletion without Redis."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_lifecycle import agent, ready
from tests.support.kube import Cluster, OperatorProcess
from tests.support.net import free_port
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e


def holder(cluster: Cluster) -> str | None:
    lease = cluster.get("lease", "voicefleet-operator", "default", check=False)
    return (lease.get("spec") or {}).get("holderIdentity")


def leader_gauge(op: OperatorProcess) -> float:
    for line in op.metrics().splitlines():
        if line.startswith("voicefleet_operator_leader "):
            return float(line.split()[1])
    return 0.0


def test_rollout_of_the_operator_hands_over_without_freezing(
    kwok_cluster: Cluster, redis_server: RedisServer
) -> None:
    old = OperatorProcess(kwok_cluster, redis_server.url)
    new = OperatorProcess(kwok_cluster, redis_server.url)
    try:
        old.start(leader_election=True, identity="operator-old")
        wait_for(lambda: holder(kwok_cluster) == "operator-old", timeout=60, what="old operator leads")
        # A rollout starts the new pod while the old one runs: it must wait (not both act, not both freeze).
        new.start(leader_election=True, identity="operator-new")
        wait_for(lambda: new.metrics() != "", timeout=30, what="new operator up")
        ns = kwok_cluster.create_namespace()
        kwok_cluster.apply(agent("ha", replicas=1), ns)
        ready(kwok_cluster, "ha", ns, 1)
        assert holder(kwok_cluster) == "operator-old"
        assert (leader_gauge(old), leader_gauge(new)) == (1.0, 0.0)

        stopped = time.monotonic()
        old.stop()  # SIGTERM: the old leader releases the Lease on its way out
        wait_for(
            lambda: holder(kwok_cluster) == "operator-new", timeout=20, what="new operator takes the Lease"
        )
        handover = time.monotonic() - stopped
        assert handover < 15, f"handover took {handover:.1f}s, longer than the lease duration"
        kwok_cluster.kubectl("scale", "voiceagent/ha", "-n", ns, "--replicas=2")
        ready(kwok_cluster, "ha", ns, 2)
    finally:
        old.stop()
        new.stop()


def test_delete_does_not_hang_when_redis_is_gone(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    kwok_cluster.apply(agent("orphan", replicas=1, redis={"url": dead}), ns)
    ready(kwok_cluster, "orphan", ns, 1)
    conds = kwok_cluster.get("voiceagent", "orphan", ns)["status"]["conditions"]
    # Unreachable session store shows up in status (the fleet keeps running: Ready stays True).
    wait_for(
        lambda: any(
            c["type"] == "Degraded" and c["reason"] == "SessionStoreUnavailable"
            for c in kwok_cluster.get("voiceagent", "orphan", ns)["status"]["conditions"]
        ),
        timeout=30,
        what="Degraded: SessionStoreUnavailable",
    )
    assert conds
    kwok_cluster.kubectl("delete", "voiceagent", "orphan", "-n", ns, "--wait=false")
    wait_for(
        lambda: not kwok_cluster.exists("voiceagent", "orphan", ns),
        timeout=60,
        what="deletion completes after bounded Redis retries",
    )
    events = kwok_cluster.get("events", namespace=ns)["items"]
    warning = [e for e in events if e["reason"] == "RedisCleanupFailed"]
    assert warning, json.dumps([e["reason"] for e in events])
    assert warning[0]["type"] == "Warning"
