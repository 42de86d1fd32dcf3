"""Session-driven scaling on a real control plane.

KWOK pods run no processes, so the registry heartbeats that agent pods write
to Redis are written by tests.support.registry for the KWOK pods' names (real
Redis, real Deployment/ReplicaSet controllers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_lifecycle import agent, ready, running_pods
from tests.support.kube import Cluster, OperatorProcess
from tests.support.redis import RedisServer
from tests.support.registry import Heartbeats
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(kwok_cluster: Cluster) -> Iterator[str]:
    yield kwok_cluster.create_namespace()


def pod_names(cluster: Cluster, name: str, ns: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in running_pods(cluster, name, ns))


def costs(cluster: Cluster, name: str, ns: str) -> dict[str, int]:
    """Each pod's deletion cost; a pod without the annotation costs 0, as the ReplicaSet reads it."""
    return {
        p["metadata"]["name"]: int(
            p["metadata"].get("annotations", {}).get("controller.kubernetes.io/pod-deletion-cost", "0")
        )
        for p in running_pods(cluster, name, ns)
    }


def test_autoscaler_follows_live_sessions_and_removes_idle_pods_first(
    kwok_cluster: Cluster, operator: OperatorProcess, redis_server: RedisServer, namespace: str
) -> None:
    ns = namespace
    policy = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 6,
        "sessionsPerPod": 10,
        "bufferSessions": 0,
        "scaleDownStabilizationSeconds": 0,
    }
    kwok_cluster.apply(agent("elastic", replicas=1, autoscaling=policy), ns)
    ready(kwok_cluster, "elastic", ns, 1)
    first = pod_names(kwok_cluster, "elastic", ns)

    with Heartbeats(redis_server.url, ns, "elastic", capacity=10) as beats:
        # A load step: 25 live sessions need ceil(25/10) = 3 pods.
        beats.set({first[0]: 25})
        va = ready(kwok_cluster, "elastic", ns, 3)
        assert va["spec"]["replicas"] == 3
        wait_for(
            lambda: kwok_cluster.get("voiceagent", "elastic", ns)["status"]["activeSessions"] == 25,
            timeout=30,
            what="status.activeSessions from the registry",
        )
        events = kwok_cluster.get("events", namespace=ns)["items"]
        assert any(e["reason"] == "Autoscaled" and "1 -> 3" in e["message"] for e in events)

        # Load drops to 10 sessions, all on one pod: scale to 1, keeping the busy pod.
        pods = pod_names(kwok_cluster, "elastic", ns)
        busy = pods[1]
        beats.set({p: (10 if p == busy else 0) for p in pods})
        ready(kwok_cluster, "elastic", ns, 1)
        wait_for(
            lambda: pod_names(kwok_cluster, "elastic", ns) == [busy],
            timeout=60,
            what="only the pod with live sessions left",
        )


def test_deletion_cost_follows_sessions_on_manual_scale_down(
    kwok_cluster: Cluster, operator: OperatorProcess, redis_server: RedisServer, namespace: str
) -> None:
    ns = namespace
    kwok_cluster.apply(agent("manual", replicas=4), ns)
    ready(kwok_cluster, "manual", ns, 4)
    pods = pod_names(kwok_cluster, "manual", ns)
    load = {pods[0]: 0, pods[1]: 9, pods[2]: 2, pods[3]: 5}

    with Heartbeats(redis_server.url, ns, "manual", capacity=20) as beats:
        beats.set(load)
        # The slow refresh writes costs even without a scale-down.
        wait_for(
            lambda: costs(kwok_cluster, "manual", ns) == load,
            timeout=30,
            what="pod-deletion-costs equal to live sessions",
        )
        # Costs are refreshed right before replicas go down, so a change just before the scale counts.
        beats.set({pods[0]: 0, pods[1]: 9, pods[2]: 2, pods[3]: 1})
        kwok_cluster.kubectl("scale", "voiceagent/manual", "-n", ns, "--replicas=2")
        ready(kwok_cluster, "manual", ns, 2)
        wait_for(
            lambda: pod_names(kwok_cluster, "manual", ns) == sorted([pods[1], pods[2]]),
            timeout=60,
            what="the two busiest pods kept",
        )
    conditions = {
        c["type"]: c["status"] for c in kwok_cluster.get("voiceagent", "manual", ns)["status"]["conditions"]
    }
    assert conditions == {"Ready": "True", "Progressing": "False", "Degraded": "False"}


def observe_checks(operator: OperatorProcess) -> tuple[float, float]:
    """(state checks run so far, VoiceAgents the operator manages), from its /metrics."""
    found = {}
    for line in operator.metrics().splitlines():
        name, _, value = line.partition(" ")
        if name in ("voicefleet_operator_observe_seconds_count", "voicefleet_operator_managed_agents"):
            found[name] = float(value)
    return found["voicefleet_operator_observe_seconds_count"], found["voicefleet_operator_managed_agents"]


def test_a_redis_outage_holds_the_fleet_still_and_is_said_once(
    kwok_cluster: Cluster, operator: OperatorProcess, private_redis: RedisServer, namespace: str
) -> None:
    ns = namespace
    policy = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 6,
        "sessionsPerPod": 10,
        "bufferSessions": 0,
        "scaleDownStabilizationSeconds": 0,
    }
    kwok_cluster.apply(agent("outage", replicas=1, autoscaling=policy, redis={"url": private_redis.url}), ns)
    ready(kwok_cluster, "outage", ns, 1)
    first = pod_names(kwok_cluster, "outage", ns)[0]

    def status() -> dict[str, Any]:
        return dict(kwok_cluster.get("voiceagent", "outage", ns).get("status", {}))

    def degraded() -> str:
        return next(c["reason"] for c in status()["conditions"] if c["type"] == "Degraded")

    def said(text: str) -> int:
        return sum(1 for line in operator.log.read_text().splitlines() if text in line and ns in line)

    with Heartbeats(private_redis.url, ns, "outage", capacity=10) as beats:
        beats.set({first: 15})
        ready(kwok_cluster, "outage", ns, 2)
        wait_for(lambda: status()["activeSessions"] == 15, timeout=30, what="15 live sessions in status")

        private_redis.stop()
        wait_for(lambda: degraded() == "SessionStoreUnavailable", timeout=30, what="Degraded by the outage")
        # Without session counts the autoscaler would see an idle fleet; let every agent be checked
        # (and the 5 s cost refresh come due) several times over.
        start, agents = observe_checks(operator)
        wait_for(
            lambda: observe_checks(operator)[0] >= start + 8 * agents,
            timeout=90,
            what="8 more checks per agent",
        )
        va = kwok_cluster.get("voiceagent", "outage", ns)
        assert va["spec"]["replicas"] == 2
        assert va["status"]["activeSessions"] == 15  # the last count, not 0
        assert said("session store unreachable") == 1

        private_redis.start()  # empty: the heartbeats write the registry again
        wait_for(lambda: degraded() == "AsExpected", timeout=30, what="healthy again after the outage")
        wait_for(lambda: said("session store reachable again") == 1, timeout=10, what="recovery said once")
        assert said("session store unreachable") == 1
        assert kwok_cluster.get("voiceagent", "outage", ns)["spec"]["replicas"] == 2
