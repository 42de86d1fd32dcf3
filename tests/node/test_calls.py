"""Live calls through Kubernetes itself: rollouts, prompt edits, scale-down and a force-deleted pod.

Callers on the host create sessions through the agent Service's ClusterIP (kube-proxy picks
the pod), then talk to the owning pod's IP, as the session API tells them. Kubernetes does
the rolling, the preStop hook, SIGTERM, readiness gating and EndpointSlices; the callers
check every answer and count a lost turn, a wrong answer or a refused resume as a drop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.node import Release
from tests.support.wait import async_wait_for
from voicefleet_operator.devnode import NODE_NAME, PAUSE_IMAGE

from .grpc_calls import Calls, ServiceFleet
from .grpc_calls import true as _true
from .webrtc_calls import WebRTCCalls

pytestmark = pytest.mark.e2e

AGENT = "callers"
REPLICAS = 3
CALLERS = 60  # gRPC and WebRTC together
WEBRTC_CALLERS = 12


def agent_spec(replicas: int = REPLICAS) -> dict[str, Any]:
    """Zero-latency providers (the scripted LLM echoes) so 60 calls fit beside the control plane."""
    return {
        "replicas": replicas,
        "autoscaling": {"enabled": False, "sessionsPerPod": 40},
        "pipeline": {
            "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": 300},
            "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
            "llm": {"provider": "scripted"},
            "tts": {"provider": "synthetic", "options": {"ms_per_char": "2"}},
            "compliance": {"audit": False},
        },
        "prompt": {"configMapRef": {"name": f"{AGENT}-prompt", "key": "prompt"}, "version": "v1"},
        "transport": {
            "grpc": {"enabled": True, "port": 50051},
            "webrtc": {"enabled": True, "udpPortRange": {"min": 40000, "max": 40199}},
        },
        "session": {"drainTimeoutSeconds": 120, "idleTimeoutSeconds": 120, "maxDurationSeconds": 1800},
    }


@pytest.fixture(scope="module")
def agent(fleet_release: Release) -> Iterator[ServiceFleet]:
    prompt = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {AGENT}-prompt}}\ndata: {{prompt: Echo v1}}\n"
    )
    fleet_release.cluster.apply(prompt, namespace=fleet_release.namespace)
    fleet_release.apply_agent(AGENT, agent_spec())
    fleet_release.wait_agent_serving(AGENT, REPLICAS)
    yield ServiceFleet([fleet_release.service_address(AGENT, "grpc")])
    fleet_release.cluster.kubectl("delete", "voiceagent", AGENT, "-n", fleet_release.namespace, check=False)


def _agent_pods(release: Release) -> set[str]:
    return release.agent_pods(AGENT)


def _ready_agent_pods(release: Release) -> set[str]:
    return release.agent_pods(AGENT, ready=True)


async def _wait_rolled(release: Release, old: set[str], within: float = 300) -> set[str]:
    """Until REPLICAS ready pods exist, none of them from ``old``, and every old pod is gone."""
    return await async_wait_for(
        lambda: asyncio.to_thread(release.rolled, AGENT, old, REPLICAS),
        timeout=within,
        interval=1,
        what="the rollout to finish",
    )


async def test_rollout_restart_and_prompt_edit_drop_no_call(
    fleet_release: Release, agent: ServiceFleet
) -> None:
    async with (
        Calls(agent, CALLERS - WEBRTC_CALLERS, turns=(3, 8), think=(0.3, 0.9)) as calls,
        WebRTCCalls(agent.endpoints[0], WEBRTC_CALLERS, turns=(3, 6), think=(0.3, 0.9)) as webrtc,
    ):
        await calls.live(CALLERS - WEBRTC_CALLERS - 5)
        await async_wait_for(
            lambda: _true(webrtc.stats.started >= WEBRTC_CALLERS), timeout=60, what="WebRTC calls"
        )
        first = _ready_agent_pods(fleet_release)
        ns = fleet_release.namespace
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "rollout", "restart", f"deployment/{AGENT}", "-n", ns
        )
        second = await _wait_rolled(fleet_release, first)
        await calls.talking()
        # A prompt ConfigMap edit is a new configuration: the operator rolls the pods again.
        patch = '{"data":{"prompt":"Echo v2"}}'
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "patch", "configmap", f"{AGENT}-prompt", "-n", ns, "-p", patch
        )
        third = await _wait_rolled(fleet_release, second)
        await calls.talking()
        stats, rtc = await calls.finish(), await webrtc.finish()
    assert stats.dropped == [] and rtc.dropped == []
    assert stats.sessions_completed == stats.sessions_started >= 2 * CALLERS
    assert rtc.completed == rtc.started >= 2 * WEBRTC_CALLERS
    # Calls were served by all three generations of pods, over both transports.
    for generation in (first, second, third):
        assert generation & stats.pods_used and generation & rtc.pods_used


async def test_scale_down_removes_idle_pods_first(fleet_release: Release, agent: ServiceFleet) -> None:
    ns = fleet_release.namespace
    long_calls = (10_000, 10_000)  # nobody hangs up
    async with (
        Calls(agent, 30, turns=long_calls, think=(0.5, 1.0)) as calls,
        WebRTCCalls(agent.endpoints[0], 10, turns=long_calls, think=(0.5, 1.0)) as webrtc,
    ):
        await calls.live(30)
        await webrtc.talking()
        busy = _ready_agent_pods(fleet_release)
        assert set(calls.stats.current.values()) == busy  # bounded-load placement used every pod
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "scale", f"voiceagent/{AGENT}", "-n", ns, "--replicas=5"
        )
        await asyncio.to_thread(fleet_release.wait_agent_serving, AGENT, 5)
        idle = _ready_agent_pods(fleet_release) - busy
        assert len(idle) == 2 and not idle & (set(calls.stats.current.values()) | webrtc.stats.pods_used)
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "scale", f"voiceagent/{AGENT}", "-n", ns, f"--replicas={REPLICAS}"
        )
        await async_wait_for(
            lambda: _true(_agent_pods(fleet_release) == busy),
            timeout=120,
            interval=1,
            what="idle pods removed",
        )
        await calls.talking()
        await webrtc.talking()
        stats, rtc = await calls.finish(), await webrtc.finish()
    assert stats.dropped == [] and rtc.dropped == []
    assert stats.resumes == 0  # no call had to move: only idle pods went
    assert rtc.completed == rtc.started == 10


async def test_force_deleted_pod_calls_resume_elsewhere(fleet_release: Release, agent: ServiceFleet) -> None:
    ns = fleet_release.namespace
    async with Calls(agent, 30, turns=(10_000, 10_000), think=(0.3, 0.6)) as calls:
        await calls.live(30)
        victim = max(
            _ready_agent_pods(fleet_release), key=lambda p: list(calls.stats.current.values()).count(p)
        )
        on_victim = list(calls.stats.current.values()).count(victim)
        assert on_victim > 0
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "delete", "pod", victim, "-n", ns, "--grace-period=0", "--force"
        )

        # The kubelet still sends SIGTERM and kills the container a moment later: calls the pod moves
        # in that moment follow it, the others resume after the pod is gone.
        def elsewhere() -> bool:
            s = calls.stats
            return s.resumes + s.migrations >= on_victim and victim not in s.current.values()

        await async_wait_for(
            lambda: _true(elsewhere()), timeout=120, what="calls of the deleted pod going on elsewhere"
        )
        await calls.talking()
        stats = await calls.finish()
    assert stats.dropped == []  # every resumed or moved call restored exactly the turns it had completed
    assert stats.resumes + stats.migrations >= on_victim
    await asyncio.to_thread(fleet_release.wait_agent_serving, AGENT, REPLICAS)


def _degraded(release: Release) -> tuple[str, str, str]:
    conditions = release.agent(AGENT).get("status", {}).get("conditions", [])
    c: dict[str, str] = next((c for c in conditions if c["type"] == "Degraded"), {})
    return c.get("status", ""), c.get("reason", ""), c.get("message", "")


async def test_bad_images_degrade_the_agent_and_never_get_calls(
    fleet_release: Release, agent: ServiceFleet
) -> None:
    ns = fleet_release.namespace
    serving = _ready_agent_pods(fleet_release)

    def set_image(image: str) -> None:
        patch = json.dumps({"spec": {"image": image}})
        fleet_release.cluster.kubectl("patch", "voiceagent", AGENT, "-n", ns, "--type=merge", "-p", patch)

    # An image nobody can pull (a registry on a closed local port), then one whose command fails.
    for image, reasons in [
        ("localhost:1/voicefleet/missing:0", {"ErrImagePull", "ImagePullBackOff"}),
        (PAUSE_IMAGE, {"CrashLoopBackOff", "StartError", "RunContainerError"}),
    ]:
        await asyncio.to_thread(set_image, image)

        async def failing(reasons: set[str] = reasons) -> tuple[str, str, str] | None:
            degraded = await asyncio.to_thread(_degraded, fleet_release)
            return degraded if degraded[1] in reasons else None

        status, _, message = await async_wait_for(
            failing, timeout=120, interval=1, what=f"Degraded with one of {reasons}"
        )
        assert status == "True" and "pod " + AGENT in message, message
        # The rollout is stuck behind the failing pod; the old pods keep every call.
        calls = Calls(agent, 20, turns=(2, 3), think=(0.1, 0.2))
        await calls.live(1)
        stats = await calls.finish()
        assert stats.dropped == [] and stats.sessions_completed == stats.sessions_started >= 20
        assert stats.pods_used <= serving, "a call went to a pod that never registered"
    selector = f"involvedObject.name={AGENT},reason=DegradedTrue"
    events = fleet_release.cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", selector, "-o", "json"
    )
    assert json.loads(events.stdout)["items"], "no Warning event for the degraded agent"
    await asyncio.to_thread(set_image, fleet_release.image)
    await asyncio.to_thread(fleet_release.wait_agent_serving, AGENT, REPLICAS)
    await async_wait_for(
        lambda: _true(_degraded(fleet_release)[0] == "False"),
        timeout=120,
        interval=1,
        what="Degraded cleared",
    )


async def test_node_drain_respects_the_disruption_budget(fleet_release: Release, agent: ServiceFleet) -> None:
    """All agent pods share the one real node: a drain may take one at a time, and none while one is
    missing. The evicted pod drains its calls (SIGTERM, preStop), so no call is cut."""
    before = _ready_agent_pods(fleet_release)
    try:
        async with Calls(agent, 30, turns=(3, 6), think=(0.2, 0.5)) as calls:
            await calls.live(25)
            drain = await asyncio.to_thread(
                fleet_release.cluster.kubectl,
                "drain", NODE_NAME, f"--pod-selector=voicefleet.io/agent={AGENT}", "--delete-emptydir-data",
                "--ignore-daemonsets", "--timeout=40s", check=False,
            )  # fmt: skip
            assert drain.returncode != 0, drain.stdout  # the budget held the other pods back
            assert "disruption budget" in drain.stderr, drain.stderr
            remaining = _agent_pods(fleet_release) & before
            assert len(remaining) == REPLICAS - 1, "exactly one pod was evicted"
            await calls.talking()
            stats = await calls.finish()
    finally:
        await asyncio.to_thread(fleet_release.cluster.kubectl, "uncordon", NODE_NAME)
    assert stats.dropped == [] and stats.sessions_completed == stats.sessions_started
    await asyncio.to_thread(fleet_release.wait_agent_serving, AGENT, REPLICAS)


async def test_redis_pod_replaced_drops_no_call(fleet_release: Release, agent: ServiceFleet) -> None:
    ns = fleet_release.namespace
    long_calls = (10_000, 10_000)
    async with (
        Calls(agent, 30, turns=long_calls, think=(0.3, 0.6)) as calls,
        WebRTCCalls(agent.endpoints[0], 10, turns=long_calls, think=(0.3, 0.6)) as webrtc,
    ):
        await calls.live(30)
        await webrtc.talking()
        redis = fleet_release.ready_pods("app.kubernetes.io/component=redis")[0]["metadata"]["name"]
        await asyncio.to_thread(fleet_release.cluster.kubectl, "delete", "pod", redis, "-n", ns)

        def new_redis() -> bool:
            pods = fleet_release.ready_pods("app.kubernetes.io/component=redis")
            return bool(pods) and pods[0]["metadata"]["name"] != redis

        await async_wait_for(
            lambda: asyncio.to_thread(new_redis), timeout=120, interval=1, what="a new Redis pod"
        )
        await calls.talking()
        await webrtc.talking()
        # The pods wrote their registry and live pins back into the empty Redis.
        await async_wait_for(
            lambda: asyncio.to_thread(
                lambda: fleet_release.agent(AGENT).get("status", {}).get("activeSessions") == 40
            ),
            timeout=60,
            interval=1,
            what="the live sessions counted again",
        )
        stats, rtc = await calls.finish(), await webrtc.finish()
    assert stats.dropped == [] and stats.resumes == 0
    assert rtc.dropped == [] and rtc.completed == rtc.started == 10


async def test_operator_pod_deleted_mid_rollout(fleet_release: Release, agent: ServiceFleet) -> None:
    ns = fleet_release.namespace
    deployment = fleet_release.cluster.get("deployment", AGENT, namespace=ns)
    old_hash = deployment["metadata"]["annotations"]["voicefleet.io/config-hash"]
    operator = fleet_release.ready_pods("app.kubernetes.io/component=operator")[0]["metadata"]["name"]
    async with Calls(agent, 30, turns=(3, 6), think=(0.2, 0.5)) as calls:
        await calls.live(25)
        first = _ready_agent_pods(fleet_release)
        patch = '{"data":{"prompt":"Echo v3"}}'
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "patch", "configmap", f"{AGENT}-prompt", "-n", ns, "-p", patch
        )
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "delete", "pod", operator, "-n", ns, "--wait=false"
        )
        await _wait_rolled(fleet_release, first)
        await calls.talking()
        stats = await calls.finish()
    assert stats.dropped == []
    new_hash = fleet_release.cluster.get("deployment", AGENT, namespace=ns)["metadata"]["annotations"]
    assert new_hash["voicefleet.io/config-hash"] != old_hash
    operators = fleet_release.ready_pods("app.kubernetes.io/component=operator")
    assert [p["metadata"]["name"] for p in operators] != [operator]


async def test_rollout_moves_calls_longer_than_the_drain_deadline(
    fleet_release: Release, agent: ServiceFleet
) -> None:
    """Calls that would last 30 minutes, pods that would serve them up to 30 minutes when draining:
    the rollout still completes, because each draining pod moves its calls to the others."""
    ns, turns, think = fleet_release.namespace, (10**6, 10**6), (1.0, 2.0)  # turns until stopped
    before = _ready_agent_pods(fleet_release)
    spec = agent_spec()
    spec["session"] = {**spec["session"], "drainTimeoutSeconds": 1800, "maxDurationSeconds": 3600}
    fleet_release.apply_agent(AGENT, spec)  # a new configuration: pods roll (no calls yet)
    first = await _wait_rolled(fleet_release, before)
    async with (
        Calls(agent, CALLERS - WEBRTC_CALLERS, turns=turns, think=think) as calls,
        WebRTCCalls(agent.endpoints[0], WEBRTC_CALLERS, turns=turns, think=think) as rtc,
    ):
        await calls.live(CALLERS - WEBRTC_CALLERS)
        await async_wait_for(lambda: _true(rtc.stats.started >= WEBRTC_CALLERS), timeout=60, what="WebRTC")
        await asyncio.to_thread(
            fleet_release.cluster.kubectl, "rollout", "restart", f"deployment/{AGENT}", "-n", ns
        )
        second = await _wait_rolled(fleet_release, first, within=300)
        await calls.talking()
        await rtc.talking()
        stats, rtc_stats = await calls.finish(), await rtc.finish()
    fleet_release.apply_agent(AGENT, agent_spec())
    await _wait_rolled(fleet_release, second)
    assert stats.dropped == [] and rtc_stats.dropped == []
    # every call began on the first pods, was moved (at least once) and ended on the second ones
    assert stats.sessions_completed == stats.sessions_started == CALLERS - WEBRTC_CALLERS
    assert stats.migrations >= CALLERS - WEBRTC_CALLERS and stats.resumes == 0
    assert rtc_stats.completed == rtc_stats.started == WEBRTC_CALLERS
    assert rtc_stats.moved >= WEBRTC_CALLERS
    for used in (stats.pods_used, rtc_stats.pods_used):
        assert used & first and used & second
    assert max(stats.gap_seconds) < 5.0
