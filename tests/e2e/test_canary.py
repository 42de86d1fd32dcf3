"""Canary rollouts run by the operator on a real control plane (KWOK pods: no process runs).

KWOK pods serve no calls, so each revision's counters are written into Redis here, in the format
the pods write them (tests/sessions cover the pods' side; tests/node/test_canary.py has real calls).
What is checked is the operator's part: the canary Deployment beside an untouched stable one, the
split placement reads from Redis, analysis from the counters, no data that pauses instead of
promoting, automatic rollback, manual commands, Events and the printer columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.revision_stats import latency_bucket_field
from tests.support.kube import Cluster, OperatorProcess
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

ROLLOUT = {
    "strategy": "canary",
    "steps": [{"weight": 30, "pauseSeconds": 3}, {"weight": 60, "pauseSeconds": 3}],
    "analysis": {"intervalSeconds": 2, "minTurns": 5, "maxToolFailureRate": 0.2, "maxResponseP95Ms": 1500},
}


def _agent(name: str, prompt: str, rollout: dict[str, Any] = ROLLOUT) -> str:
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "prompt": {"inline": prompt, "version": prompt.split()[-1]},
            "rollout": rollout,
        },
    }
    return json.dumps(body)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


class Agent:
    def __init__(self, cluster: Cluster, ns: str, name: str, client: redis.Redis) -> None:
        self.cluster, self.ns, self.name, self.redis = cluster, ns, name, client
        self.keys = AgentKeys(ns, name)

    def rollout(self) -> dict[str, Any]:
        status: dict[str, Any] = self.cluster.get("voiceagent", self.name, self.ns).get("status", {})
        return dict(status.get("rollout", {}))

    def wait(self, phase: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            r = self.rollout()
            return r if r.get("phase") == phase and all(r.get(k) == v for k, v in fields.items()) else None

        return wait_for(reached, timeout=timeout, interval=0.3, what=f"{self.name} {phase} {fields}")

    def deployment_hash(self, name: str) -> str:
        d = self.cluster.get("deployment", name, self.ns)
        return str(d["metadata"]["annotations"]["voicefleet.io/config-hash"])

    def replicas(self, name: str) -> int:
        return int(self.cluster.get("deployment", name, self.ns)["spec"]["replicas"])

    def split(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.redis.hgetall(self.keys.rollout).items()}

    def serve(self, revision: str, turns: int, tool_failures: int = 0, latency_ms: float = 200) -> None:
        """What pods of ``revision`` add to its counters after serving ``turns`` turns."""
        key = self.keys.revision_stats(revision)
        for field, n in {
            "sessions": turns,
            "turns": turns,
            "tool_calls": turns,
            "tool_failures": tool_failures,
            latency_bucket_field(latency_ms): turns,
        }.items():
            self.redis.hincrby(key, field, n)

    def events(self) -> list[str]:
        out = self.cluster.kubectl(
            "get", "events", "-n", self.ns, "-o", "json",
            "--field-selector", f"involvedObject.kind=VoiceAgent,involvedObject.name={self.name}",
        ).stdout  # fmt: skip
        return [e["reason"] for e in json.loads(out)["items"]]

    def command(self, what: str) -> None:
        self.cluster.kubectl(
            "annotate",
            "voiceagent",
            self.name,
            "-n",
            self.ns,
            f"voicefleet.io/rollout-command={what}",
            "--overwrite",
        )


def test_a_canary_pauses_without_data_rolls_back_on_failures_and_is_promoted(
    kwok_cluster: Cluster, operator: OperatorProcess, redis_client: redis.Redis
) -> None:
    ns = kwok_cluster.create_namespace()
    va = Agent(kwok_cluster, ns, "canaried", redis_client)
    kwok_cluster.apply(_agent("canaried", "You answer calls v1"), ns)
    stable = va.wait("Stable")["stableRevision"]
    assert stable and va.deployment_hash("canaried") == stable

    # A new prompt: a canary beside the stable Deployment, which keeps its revision and config.
    stable_config = kwok_cluster.get("configmap", "canaried-config", ns)["data"]
    kwok_cluster.apply(_agent("canaried", "You answer calls v2"), ns)
    first = va.wait("Progressing", weight=30)
    canary = first["canaryRevision"]
    assert canary and canary != stable
    assert va.deployment_hash("canaried-canary") == canary and va.replicas("canaried-canary") == 1
    assert va.deployment_hash("canaried") == stable
    assert kwok_cluster.get("configmap", "canaried-config", ns)["data"] == stable_config
    wait_for(lambda: va.split() == {"canary": canary, "weight": "30"}, timeout=10, what="the split in Redis")
    columns = kwok_cluster.kubectl("get", "va", "canaried", "-n", ns).stdout.split("\n")
    header, row = columns[0].split(), columns[1].split()
    assert row[header.index("PHASE")] == "Progressing" and row[header.index("WEIGHT")] == "30"

    # No calls, no data: the pause runs out and the canary waits instead of moving on.
    paused = va.wait("Paused", timeout=30, pauseReason="no_data")
    assert paused["weight"] == 30 and paused["step"] == 0
    assert "AnalysisNoData" in va.events()

    # Calls arrive and go well: step by step to the end, then the stable Deployment takes the revision.
    def healthy_traffic() -> dict[str, Any] | None:
        va.serve(canary, 10)
        va.serve(stable, 20)
        r = va.rollout()
        done = r.get("phase") == "Promoting" or r.get("stableRevision") == canary
        return r if done else None

    wait_for(healthy_traffic, timeout=60, interval=1, what="promotion")
    va.wait("Stable", stableRevision=canary)
    assert va.deployment_hash("canaried") == canary
    wait_for(lambda: va.replicas("canaried-canary") == 0, timeout=20, what="the canary emptied")
    wait_for(lambda: va.split() == {}, timeout=10, what="the split cleared")
    assert {"CanaryStarted", "CanaryStep", "CanaryPromoted"} <= set(va.events())
    promoted_config = kwok_cluster.get("configmap", "canaried-config", ns)["data"]
    assert "v2" in json.loads(promoted_config["agent.json"])["promptText"]

    # A revision whose tools fail is rolled back at its first failing measurement.
    kwok_cluster.apply(_agent("canaried", "You answer calls v3"), ns)
    bad = va.wait("Progressing", weight=30)["canaryRevision"]

    def failing_traffic() -> dict[str, Any] | None:
        va.serve(bad, 10, tool_failures=8)
        r = va.rollout()
        return r if r.get("phase") == "RolledBack" else None

    rolled_back = wait_for(failing_traffic, timeout=30, interval=1, what="rollback")
    assert rolled_back["failedRevision"] == bad and rolled_back["weight"] == 0
    assert "AnalysisFailed" in va.events() and "CanaryRolledBack" in va.events()
    wait_for(lambda: va.replicas("canaried-canary") == 0, timeout=20, what="the bad canary emptied")
    wait_for(lambda: va.split() == {}, timeout=10, what="no split after the rollback")
    assert va.deployment_hash("canaried") == canary  # the stable pods never ran the bad revision

    # Commands: a fourth revision promoted by hand at once, no data needed.
    kwok_cluster.apply(_agent("canaried", "You answer calls v4"), ns)
    fourth = va.wait("Progressing", weight=30)["canaryRevision"]
    va.command("promote")
    va.wait("Stable", stableRevision=fourth)
    annotations = kwok_cluster.get("voiceagent", "canaried", ns)["metadata"].get("annotations", {})
    assert "voicefleet.io/rollout-command" not in annotations
