"""A real Prometheus scrapes the operator and real agent pod processes while calls run; every query of
the chart's Grafana dashboard then returns data through its HTTP API, and the chart's alert rules
evaluate cleanly against the same series.

The scrape config mirrors the chart's ServiceMonitor and PodMonitor (tests/support/prometheus.py), the
pod labels the PodMonitor copies included: the two pods run different revisions, as during a canary.
The rare events the panels show are produced: a provider failing over (TTS), barge-ins, a tool that
fails, a full garbage collection, and a live call migrated off a draining pod.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallSummary
from tests.e2e.test_lifecycle import agent
from tests.pipeline.toolserver import tool
from tests.support.chart import alert_names, dashboard, pod_monitor, rule_groups, service_monitor
from tests.support.kube import Cluster, OperatorProcess
from tests.support.net import free_port
from tests.support.pod import PodProcess, synthetic_config, tone
from tests.support.prometheus import PrometheusServer, Target, pod_target_labels
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for, wait_for
from voicefleet.v1 import session_pb2, session_pb2_grpc
from voicefleet_operator.render import PROMPT_VERSION_LABEL, REVISION_LABEL

pytestmark = pytest.mark.e2e

AGENT = "desk"
RELEASE_NAMESPACE = "voicefleet"  # where the chart (operator and ServiceMonitor) would live
RESUME_KEY = b"dashboard-test-key-0123456789abcdef"
# What Grafana would put in for its built-in variables; 5m covers everything the test did.
BUILTIN_VARIABLES = {"__rate_interval": "5m", "__interval": "5m", "__range": "5m"}
REVISIONS = ["rev-stable", "rev-canary"]  # the two pods' revisions, as during a canary
BOOKING = {
    "match": "book",
    "say": "Let me check.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
}


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every target of every panel, rows included."""
    panels = board["panels"]
    panels += [p for row in panels for p in row.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", []) if "expr" in t]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's $name and ${name} template variables (an unknown one raises KeyError)."""
    values = {**BUILTIN_VARIABLES, **variables}
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


@dataclass
class Stack:
    namespace: str
    prometheus: PrometheusServer
    pods: list[PodProcess]


@pytest.fixture(scope="module")
def leader(kwok_cluster: Cluster, redis_server: RedisServer) -> Iterator[OperatorProcess]:
    """The operator as the chart runs it: with leader election."""
    op = OperatorProcess(kwok_cluster, redis_server.url)
    op.start(leader_election=True, identity="vf-voicefleet-operator-0")
    try:
        wait_for(lambda: "voicefleet_operator_leader 1.0" in op.metrics(), timeout=60, what="operator leads")
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def namespace(kwok_cluster: Cluster, leader: OperatorProcess) -> Iterator[str]:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent(AGENT, replicas=2), ns)
    yield ns
    # While the operator runs, so that its finalizer goes with the VoiceAgent.
    kwok_cluster.kubectl("delete", "voiceagent", AGENT, "-n", ns, "--timeout=60s", check=False)
    kwok_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
async def stack(
    tmp_path: Path, redis_server: RedisServer, leader: OperatorProcess, namespace: str
) -> AsyncIterator[Stack]:
    config = synthetic_config(
        "hello there",
        agent=AGENT,
        namespace=namespace,
        transport={"webrtc": {"enabled": False}},
        # Every answer fails over from the first TTS to espeak-ng: errors and fallbacks get counted.
        pipeline={
            "tts": {"options": {"fail": "true"}, "fallback": [{"provider": "espeak"}]},
            "llm": {"options": {"rules": json.dumps([BOOKING])}},
        },
        tools=[tool("book_table", f"http://127.0.0.1:{free_port()}/book", retries=0)],  # nobody answers
        session={
            "drainTimeoutSeconds": 60,
            "idleTimeoutSeconds": 120,
            "migration": {"quietWaitSeconds": 20, "followTimeoutSeconds": 5},
        },
        sessionsPerPod=20,
    )
    key_file = tmp_path / "resume.key"
    key_file.write_bytes(RESUME_KEY)
    env = {"VOICEFLEET_REDIS_URL": redis_server.url, "VOICEFLEET_RESUME_KEY_FILE": str(key_file)}
    suffix = uuid.uuid4().hex[:5]
    pods = [
        PodProcess(config, tmp_path, f"{AGENT}-{suffix}-{i}", env={**env, "VOICEFLEET_REVISION": revision})
        for i, revision in enumerate(REVISIONS)
    ]
    copy = pod_monitor()["spec"]["podTargetLabels"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    prometheus = PrometheusServer(
        tmp_path,
        targets=[
            Target(f"127.0.0.1:{leader.metrics_port}", RELEASE_NAMESPACE, "vf-voicefleet-operator-metrics",
                   "vf-voicefleet-operator-0", service="vf-voicefleet-operator-metrics"),
            *(Target(p.metrics_address, namespace, f"{RELEASE_NAMESPACE}/vf-voicefleet-agents", p.name,
                     copied=pod_target_labels(copy, {REVISION_LABEL: r, PROMPT_VERSION_LABEL: "none"}))
              for p, r in zip(pods, REVISIONS, strict=True)),
        ],
        honor_labels=bool(service_monitor()["spec"]["endpoints"][0].get("honorLabels", False)),
        rule_files=[rules],
    )  # fmt: skip
    try:
        await asyncio.gather(*(p.start() for p in pods))
        await asyncio.to_thread(prometheus.start)
        # Counts from before a target's first scrape would never show up in a rate().
        await async_wait_for(lambda: all_scraped(prometheus), timeout=30, what="every target scraped")
        yield Stack(namespace, prometheus, pods)
    finally:
        await asyncio.to_thread(prometheus.stop)
        for p in pods:
            await p.kill()


async def all_scraped(prometheus: PrometheusServer) -> bool:
    targets = (await prometheus.api("targets", state="active"))["activeTargets"]
    return len(targets) == len(prometheus.targets) and all(t["health"] == "up" for t in targets)


async def placed_call(via: PodProcess) -> None:
    """A call placed through the session API: a spoken turn, a typed turn cut short by the caller
    (barge-in), a turn whose tool fails, then the caller hangs up."""
    async with grpc.aio.insecure_channel(via.grpc_address) as channel:
        grant = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(), timeout=10
        )
    async with GrpcCaller(
        grant.grpc_address, session_id=grant.session_id, resume_token=grant.resume_token
    ) as call:
        await call.play(tone(16000, 0.6, silence_after=0.6))
        # The answer to what the synthetic STT heard.
        await call.recorder.wait(lambda s: "hello there" in s.transcripts and len(s.agent_texts) >= 1, 30)
        call.send_text("tell me a long story")
        await call.recorder.wait(lambda s: "tell me a long story" in s.transcripts, 30)
        frames = call.recorder.summary.audio_frames
        await call.recorder.wait(lambda s: s.audio_frames > frames + 5, 30)
        call.send_text("stop")  # while the agent speaks
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 3, 30)
        call.send_text("book a table for two")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 4, 30)
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 30)


def answered(summary: CallSummary, turns: int) -> bool:
    return len(summary.agent_texts) >= turns


async def chatty_call(pod: PodProcess, turns: int) -> None:
    """Typed turns as fast as the pod takes them (at most two waiting for an answer, within the pod's
    limit of three): each one leaves garbage behind."""
    async with GrpcCaller(pod.grpc_address) as call:
        for i in range(1, turns + 1):
            await call.recorder.wait(functools.partial(answered, turns=i - 2), 30)
            call.send_text(f"turn {i}")
        await call.end()


async def full_collections(pod: PodProcess) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{pod.metrics_address}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        text = await r.text()
    (count,) = re.findall(r'^voicefleet_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.M)
    return float(count)


async def provoke_full_collection(pod: PodProcess) -> None:
    """The pod freezes its start-up heap, so a full (generation 2) collection needs a pile of young
    garbage first: about 800 short turns per collection, measured (a few seconds of pod CPU)."""
    before = await full_collections(pod)

    async def collected() -> bool:
        await asyncio.gather(*(chatty_call(pod, 50) for _ in range(8)))
        return await full_collections(pod) > before

    await async_wait_for(collected, timeout=60, what=f"a full garbage collection in {pod.name}")


async def has_data(prometheus: PrometheusServer, expr: str) -> list[dict[str, Any]] | None:
    result = await prometheus.query(expr)
    return result if result and all(math.isfinite(float(r["value"][1])) for r in result) else None


async def wait_for_every_query(
    prometheus: PrometheusServer, queries: list[tuple[str, str]], variables: dict[str, str], timeout: float
) -> None:
    """Until every (panel title, expression) returns finite data; the failure names those that did not."""
    empty: dict[str, list[str]] = {}

    async def all_answer() -> bool:
        empty.clear()
        for title, expr in queries:
            if await has_data(prometheus, substitute(expr, variables)) is None:
                empty.setdefault(title, []).append(expr)
        return not empty

    try:
        await async_wait_for(all_answer, timeout=timeout, interval=1.0, what="every dashboard query")
    except AssertionError as exc:
        raise AssertionError(f"dashboard queries without data: {empty}") from exc


async def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    prometheus, (old, new) = stack.prometheus, stack.pods
    board = dashboard()
    queries = dashboard_queries(board)
    assert len(queries) >= 15

    await asyncio.gather(*(placed_call(old if i % 2 else new) for i in range(4)))
    await provoke_full_collection(new)

    # A live call moved off a draining pod. A second call that does not follow moves keeps the old
    # pod serving (and scraped) until the test has read its migration count.
    async with (
        GrpcCaller(old.grpc_address) as mover,
        GrpcCaller(old.grpc_address, follow_migrations=False) as stayer,
    ):
        mover.send_text("hello")
        stayer.send_text("hello")
        await mover.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
        await stayer.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
        old.terminate()
        await async_wait_for(lambda: _on(mover, new.name), timeout=30, what="the call to move")
        mover.send_text("are you still there")
        await mover.recorder.wait(lambda s: len(s.agent_texts) >= 2, 30)
        await async_wait_for(
            lambda: has_data(
                prometheus, f'voicefleet_migrations_total{{outcome="moved",pod="{old.name}"}} > 0'
            ),
            timeout=30,
            what="the old pod's moved call scraped",
        )

        variables = {"namespace": stack.namespace}
        await wait_for_every_query(prometheus, queries, variables, timeout=60)

        # The Revisions row shows each revision as its own line.
        (turn_errors,) = [expr for title, expr in queries if title == "Turn error rate by revision"]
        lines = await prometheus.query(substitute(turn_errors, variables))
        assert {line["metric"].get("voicefleet_io_revision") for line in lines} == set(REVISIONS)
        for revision in REVISIONS:  # every pod says what it runs, PodMonitor or not
            info = f'voicefleet_revision_info{{revision="{revision}",prompt_version="none"}} == 1'
            assert await has_data(prometheus, info), revision

        # The $namespace variable offers the VoiceAgent's namespace (not the operator's).
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "namespace"]
        metric = re.fullmatch(r"label_values\((\w+), namespace\)", variable["query"])
        assert metric is not None
        values = await prometheus.api("label/namespace/values", **{"match[]": metric.group(1)})
        # (The shared test cluster may hold other tests' VoiceAgents: their namespaces may show too.)
        assert stack.namespace in values and RELEASE_NAMESPACE not in values, values

        # The chart's rules ran against these series without errors; a leading operator is not down.
        groups = (await prometheus.api("rules", type="alert"))["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(rules) == set(alert_names(rule_groups()))
        assert {n: r["lastError"] for n, r in rules.items() if r["health"] != "ok"} == {}
        assert rules["VoiceFleetOperatorDown"]["state"] == "inactive"
        await mover.end()
        await stayer.end()


async def _on(call: GrpcCaller, pod: str) -> bool:
    return bool(call.pods) and call.pods[-1] == pod
