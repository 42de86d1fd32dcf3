"""Canary rollouts on the real node: the operator gates each new revision on an eval Job and on
live per-revision metrics, with callers talking throughout.

The agent's LLM is the OpenAI wire-protocol server on the node's bridge address, answering from a
script per prompt version (a marker in the prompt): every revision echoes the callers' turns after a
``lookup`` tool call, and greets "hello" with a welcome (except the revision that fails its eval).
A revision whose tool endpoint is dead fails live instead. Callers create sessions through the
agent Service and check every answer; a lost turn or a wrong answer counts as a dropped call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yaml

from tests.pipeline.toolserver import ToolServer
from tests.support.node import Release
from tests.support.wait import async_wait_for
from tests.wire.openai_server import DEFAULT_KEY, OpenAIServer, PromptRule, PromptScript
from voicefleet_operator.devcluster import NODE_IP

from .grpc_calls import Calls, ServiceFleet

pytestmark = pytest.mark.e2e

AGENT = "clinic"
EVALS = "clinic-evals"
SUITE = {
    "suite": "clinic-smoke",
    "scenarios": [{"name": "greets", "turns": [{"type": "hello", "expect": [{"contains": "welcome"}]}]}],
}


def _script(marker: str, greeting: str = "Welcome to the clinic.") -> PromptScript:
    return PromptScript(
        marker=marker,
        rules=[
            PromptRule(match=r"^hello", reply=greeting),
            PromptRule(match=r"turn \d+", tool="lookup", arguments={"caller": "x"}, then="You said: {user}."),
        ],
    )


@pytest.fixture
async def llm(fleet_release: Release) -> AsyncIterator[OpenAIServer]:
    """On the node's bridge address (it exists once the node is up): the pods reach it there."""
    server = OpenAIServer()
    for marker in ("[v1]", "[v2]", "[v4]", "[v5]"):
        server.script_prompt(_script(marker))
    server.script_prompt(_script("[v3]", greeting="Go away."))
    await server.start(NODE_IP, 0)
    yield server
    await server.stop()


@pytest.fixture
async def tools(fleet_release: Release) -> AsyncIterator[ToolServer]:
    async with ToolServer(host=NODE_IP) as server:
        yield server


def agent_spec(marker: str, llm: OpenAIServer, tool_url: str) -> dict[str, Any]:
    return {
        "replicas": 2,
        "autoscaling": {"enabled": False, "sessionsPerPod": 40},
        "pipeline": {
            "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": 300},
            "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
            "llm": {
                "provider": "openai",
                "model": "local",
                "baseUrl": llm.base_url,
                "credentialsSecretRef": {"name": f"{AGENT}-llm", "key": "api-key"},
            },
            "tts": {"provider": "synthetic", "options": {"ms_per_char": "2"}},
            "compliance": {"audit": False},
        },
        "prompt": {"inline": f"You are the clinic's assistant {marker}.", "version": marker.strip("[]")},
        "tools": [
            {
                "name": "lookup",
                "description": "Look the caller up.",
                "parameters": {"type": "object", "properties": {"caller": {"type": "string"}}},
                "endpoint": {"url": tool_url},
                "timeoutSeconds": 2,
                "retries": 0,
            }
        ],
        "transport": {"grpc": {"enabled": True, "port": 50051}, "webrtc": {"enabled": False}},
        "session": {"drainTimeoutSeconds": 120, "idleTimeoutSeconds": 120, "maxDurationSeconds": 1800},
        "rollout": {
            "strategy": "canary",
            "steps": [{"weight": 50, "pauseSeconds": 20}],
            "analysis": {
                "intervalSeconds": 5,
                "minTurns": 5,
                "maxToolFailureRate": 0.2,
                "maxTurnErrorRate": 0.2,
            },
            "eval": {"suites": [EVALS], "minPassRate": 1.0, "timeoutSeconds": 180},
        },
    }


@pytest.fixture
def agent(fleet_release: Release, llm: OpenAIServer, tools: ToolServer) -> Iterator[ServiceFleet]:
    ns = fleet_release.namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{AGENT}-llm"},
        "stringData": {"api-key": DEFAULT_KEY},
    }
    suites = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": EVALS, "labels": {"voicefleet.io/eval-suite-for": AGENT}},
        "data": {"smoke.yaml": yaml.safe_dump(SUITE)},
    }
    fleet_release.cluster.apply(yaml.safe_dump_all([secret, suites]), namespace=ns)
    fleet_release.apply_agent(AGENT, agent_spec("[v1]", llm, tools.url("/book")))
    fleet_release.wait_agent_serving(AGENT, 2)
    yield ServiceFleet([fleet_release.service_address(AGENT, "grpc")])
    fleet_release.cluster.kubectl("delete", "voiceagent", AGENT, "-n", ns, check=False)


def _rollout(release: Release) -> dict[str, Any]:
    status: dict[str, Any] = release.agent(AGENT).get("status", {}).get("rollout", {})
    return status


async def _phase(release: Release, want: str, within: float = 240, **fields: Any) -> dict[str, Any]:
    """Until the rollout shows ``want`` (and ``fields``); fails early on a phase that cannot lead there."""

    async def reached() -> dict[str, Any] | None:
        rollout = await asyncio.to_thread(_rollout, release)
        if rollout.get("phase") == want and all(rollout.get(k) == v for k, v in fields.items()):
            return rollout
        return None

    result: dict[str, Any] = await async_wait_for(reached, timeout=within, interval=1, what=f"rollout {want}")
    return result


def _events(release: Release) -> list[str]:
    out = release.cluster.kubectl(
        "get", "events", "-n", release.namespace, "--field-selector",
        f"involvedObject.kind=VoiceAgent,involvedObject.name={AGENT}", "-o", "json",
    ).stdout  # fmt: skip
    return [e["reason"] for e in json.loads(out)["items"]]


def _canary_replicas(release: Release) -> int:
    deployment = release.cluster.get("deployment", f"{AGENT}-canary", namespace=release.namespace)
    return int(deployment["spec"]["replicas"])


@pytest.mark.timeout(1500)
async def test_canaries_are_promoted_rolled_back_and_paused_without_dropping_calls(
    fleet_release: Release, agent: ServiceFleet, llm: OpenAIServer, tools: ToolServer
) -> None:
    release = fleet_release
    stable_v1 = (await asyncio.to_thread(_rollout, release)).get("stableRevision")
    async with Calls(agent, 16, turns=(3, 6), think=(0.2, 0.6)) as calls:
        await calls.live(12)

        # A good revision: its eval passes, half the new calls go to it, and it is promoted.
        release.apply_agent(AGENT, agent_spec("[v2]", llm, tools.url("/book")))
        await _phase(release, "Progressing", weight=50)
        canary = await asyncio.to_thread(
            release.ready_pods, f"voicefleet.io/agent={AGENT},voicefleet.io/track=canary"
        )
        canary_pods = {p["metadata"]["name"] for p in canary}
        await calls.talking()
        promoted = await _phase(release, "Stable", within=300)
        assert promoted["stableRevision"] != stable_v1
        assert release.agent(AGENT)["status"]["promptVersion"].startswith("v2@")
        assert canary_pods & calls.stats.pods_used, "the canary served new calls"
        await calls.talking()

        # A revision that fails its eval never takes a call.
        release.apply_agent(AGENT, agent_spec("[v3]", llm, tools.url("/book")))
        failed = await _phase(release, "RolledBack")
        assert failed["failedRevision"] and failed["weight"] == 0
        assert "EvalFailed" in _events(release)
        await calls.talking()

        # A revision whose tool calls fail live is rolled back by the analysis, calls and all.
        release.apply_agent(AGENT, agent_spec("[v4]", llm, f"http://{NODE_IP}:1/book"))
        await _phase(release, "Progressing", weight=50)
        await _phase(release, "RolledBack", within=180)
        assert "AnalysisFailed" in _events(release)
        await async_wait_for(
            lambda: asyncio.to_thread(lambda: _canary_replicas(release) == 0), timeout=60, what="canary at 0"
        )
        await calls.talking()
        stats = await calls.finish()
    assert stats.dropped == []
    assert stats.sessions_completed == stats.sessions_started

    # No traffic, no data: the canary pauses at its step instead of being promoted.
    release.apply_agent(AGENT, agent_spec("[v5]", llm, tools.url("/book")))
    paused = await _phase(release, "Paused", within=240)
    assert paused["weight"] == 50 and "AnalysisNoData" in _events(release)
    ns = release.namespace
    release.cluster.kubectl("annotate", "voiceagent", AGENT, "-n", ns, "voicefleet.io/rollout-command=abort")
    await _phase(release, "RolledBack")
