"""Per-revision counters from real calls: in-process pods of two revisions on a real Redis count what
their calls do (turns, failed turns, tool calls and failures, interruptions, response latency) into
their revision's totals, which the operator's FleetReader reads; a Redis outage delays the counts
but loses none."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client as kube_client
from prometheus_client import REGISTRY

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.config import AgentConfig
from agent_pod.runtime import Pod
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.sessions.revision_stats import RevisionCounters
from agent_pod.sessions.tuning import DirectoryTuning
from agent_pod.settings import PodSettings
from tests.pipeline.toolserver import tool
from tests.support.net import free_port
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for
from voicefleet_operator.fleet_reader import FleetReader
from voicefleet_operator.kube import Kube
from voicefleet_operator.plan import StoreDown
from voicefleet_operator.spec import VoiceAgentSpec

NAMESPACE = "revisions"
KEY = b"revision-counters-key-0123456789abcdef"
FAST = DirectoryTuning(
    heartbeat_seconds=0.2, stale_seconds=1.0, max_backoff_seconds=0.3, revision_stats_flush_seconds=0.2
)
RULES = [
    {
        "match": "book",
        "say": "Let me check.",
        "tool": "book_table",
        "arguments": {"time": "19:00", "people": 2},
    },
    # Arguments the schema refuses, repeated as they are: the one repair allowed runs out.
    {"match": "cake", "tool": "order_cake", "arguments": {"time": "7pm", "people": 2}},
]


def config(agent: str, **llm_options: str) -> AgentConfig:
    nobody_listens = f"http://127.0.0.1:{free_port()}/tool"
    return synthetic_config(
        "hello there",
        agent=agent,
        namespace=NAMESPACE,
        transport={"webrtc": {"enabled": False}},
        pipeline={"llm": {"provider": "scripted", "options": {"rules": json.dumps(RULES), **llm_options}}},
        tools=[
            tool("book_table", nobody_listens, retries=0),
            tool("order_cake", nobody_listens, maxArgumentRepairs=1),
        ],
    )


class RevisionFleet:
    def __init__(self, workdir: Path, redis: RedisServer) -> None:
        self.redis = redis
        self.agent = "rev-" + uuid.uuid4().hex[:6]
        self.key_file = workdir / "resume.key"
        self.key_file.write_bytes(KEY)
        self.pods: list[Pod] = []
        self.reader = FleetReader(Kube(kube_client.ApiClient(kube_client.Configuration())), redis.url)

    async def add(self, revision: str, config: AgentConfig) -> Pod:
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name=f"{revision}-{len(self.pods)}",
            revision=revision,
            redis_url=self.redis.url,
            resume_key_file=self.key_file,
            log_format="text",
        )
        pod = Pod(settings, config, pod_ports(), tuning=FAST)
        self.pods.append(pod)
        await pod.start()
        return pod

    async def counters(self, *revisions: str) -> dict[str, RevisionCounters] | StoreDown:
        return await self.reader.read_revision_counters(
            NAMESPACE, self.agent, VoiceAgentSpec(), list(revisions)
        )

    async def reaches(self, revision: str, **expected: int) -> RevisionCounters:
        """Wait until the revision's totals in Redis show ``expected``; they are returned."""

        async def read() -> RevisionCounters | None:
            counters = await self.counters(revision)
            if isinstance(counters, StoreDown):
                return None
            got = counters[revision]
            return got if all(getattr(got, k) == v for k, v in expected.items()) else None

        return await async_wait_for(read, timeout=15, what=f"{revision} counters {expected}")

    async def close(self) -> None:
        for pod in self.pods:
            await pod.stop()
        await self.reader.close()
        await self.reader.kube.close()


@pytest.fixture
async def fleet(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[RevisionFleet]:
    fleet = RevisionFleet(tmp_path, redis_server)
    yield fleet
    await fleet.close()


async def turn(call: GrpcCaller, text: str) -> None:
    answered = len(call.recorder.summary.agent_texts)
    call.send_text(text)
    await call.recorder.wait(lambda s: len(s.agent_texts) > answered, 30)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_each_revision_counts_what_its_calls_do(fleet: RevisionFleet) -> None:
    stable = await fleet.add("rev-a", config(fleet.agent))
    canary = await fleet.add("rev-b", config(fleet.agent, fail="true"))  # every answer fails
    failures_before = metric("voicefleet_tool_failures_total")
    failed_before = metric("voicefleet_turns_total", {"result": "failed"})

    async with GrpcCaller(stable.grpc_address) as call:
        await turn(call, "book a table for two")  # the tool's endpoint refuses: failed
        await turn(call, "a cake please")  # invalid arguments, then again with no repair left
        frames = call.recorder.summary.audio_frames
        call.send_text("tell me a long story")
        await call.recorder.wait(lambda s: s.audio_frames > frames + 5, 30)
        call.send_text("stop")  # while the agent speaks: a barge-in
        await call.recorder.wait(lambda s: len(s.agent_texts) == 4, 30)  # the story, cut; the answer
        await call.end()
    async with GrpcCaller(canary.grpc_address) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: any("PROVIDER_FAILED" in e for e in s.errors), 30)
        await call.end()

    a = await fleet.reaches("rev-a", turns=4, latency_count=4)
    assert (a.sessions, a.turn_errors, a.interruptions) == (1, 0, 1)
    assert (a.tool_calls, a.tool_failures) == (3, 2)  # book failed; cake: one repairable, one not
    assert (a.audited_turns, a.divergence_flags) == (0, 0)  # synthetic speech is never audited
    b = await fleet.reaches("rev-b", turns=1)
    assert (b.sessions, b.turn_errors, b.tool_calls, b.latency_count) == (1, 1, 0, 0)
    # Prometheus counted the same events under the same definitions.
    assert metric("voicefleet_tool_failures_total") - failures_before == 2
    assert metric("voicefleet_turns_total", {"result": "failed"}) - failed_before == 1
    unknown = await fleet.counters("rev-none")
    assert not isinstance(unknown, StoreDown) and unknown["rev-none"] == RevisionCounters()


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A Redis that keeps its data over a restart, so the test sees counts from both sides of it."""
    server = RedisServer(extra=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    yield server
    server.cleanup()


async def test_a_redis_outage_delays_the_counts_but_loses_none(
    tmp_path: Path, durable_redis: RedisServer
) -> None:
    fleet = RevisionFleet(tmp_path, durable_redis)
    try:
        pod = await fleet.add("rev-a", config(fleet.agent))
        directory = pod.directory
        assert isinstance(directory, RedisDirectory)
        async with GrpcCaller(pod.grpc_address) as call:
            await turn(call, "hello")
            await call.end()
        await fleet.reaches("rev-a", sessions=1, turns=1)

        await asyncio.to_thread(durable_redis.stop)
        async with GrpcCaller(pod.grpc_address) as call:  # admitted by the pod alone
            await turn(call, "hello")
            await turn(call, "book a table")
            await call.end()
        assert isinstance(await fleet.counters("rev-a"), StoreDown)
        pending: dict[str, Any] = pod.revision_tally.pending
        assert pending["sessions"] == 1 and pending["turns"] == 2 and pending["tool_failures"] == 1

        await asyncio.to_thread(durable_redis.start)
        totals = await fleet.reaches("rev-a", sessions=2, turns=3, tool_calls=1, tool_failures=1)
        await async_wait_for(
            lambda: _empty(pod.revision_tally.pending), timeout=10, what="every count written"
        )
        again = await fleet.counters("rev-a")
        assert not isinstance(again, StoreDown) and again["rev-a"] == totals  # written once, not twice
    finally:
        await fleet.close()


async def _empty(pending: dict[str, int]) -> bool:
    return not pending
