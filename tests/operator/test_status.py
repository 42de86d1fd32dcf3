from __future__ import annotations

from voicefleet_operator.spec import RolloutStatus, VoiceAgentStatus
from voicefleet_operator.status import DeploymentView, FleetView, Observed, compute_status, pod_problem

NOW = "2026-01-01T00:00:00Z"


def observed(deployment: DeploymentView | None, **kw: object) -> Observed:
    base = dict(
        generation=4,
        selector="a=b",
        prompt_version="v1@sha256:x",
        desired_replicas=2,
        deployment=deployment,
        config_hash="h1",
    )
    base.update(kw)
    return Observed(**base)


def conds(status: VoiceAgentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


ROLLED = DeploymentView(
    generation=3,
    observed_generation=3,
    desired=2,
    replicas=2,
    updated=2,
    ready=2,
    available=2,
    config_hash="h1",
)


def test_ready_when_all_pods_ready_at_current_revision() -> None:
    st = compute_status(
        observed(ROLLED, fleet=FleetView(active_sessions=7, capacity=40)), VoiceAgentStatus(), NOW
    )
    assert conds(st) == {
        "Ready": ("True", "AllPodsReady"),
        "Progressing": ("False", "RolledOut"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (st.ready_replicas, st.active_sessions, st.capacity, st.observed_generation) == (2, 7, 40, 4)


def test_old_revision_is_progressing_not_ready() -> None:
    d = DeploymentView(
        generation=3,
        observed_generation=3,
        desired=2,
        replicas=3,
        updated=1,
        ready=3,
        available=3,
        config_hash="h0",
    )
    st = compute_status(observed(d), VoiceAgentStatus(), NOW)
    assert conds(st)["Progressing"][0] == "True"
    assert conds(st)["Ready"][0] == "False"


def test_missing_deployment_and_errors_degrade() -> None:
    st = compute_status(
        observed(None, reconcile_error="prompt ConfigMap 'x' missing"), VoiceAgentStatus(), NOW
    )
    assert conds(st)["Ready"] == ("False", "Creating")
    assert conds(st)["Degraded"] == ("True", "ReconcileFailed")


def test_redis_outage_keeps_last_counts_and_degrades() -> None:
    before = VoiceAgentStatus(active_sessions=12, capacity=60)
    st = compute_status(observed(ROLLED, fleet=FleetView(error="session store unreachable")), before, NOW)
    assert (st.active_sessions, st.capacity) == (12, 60)
    assert conds(st)["Degraded"] == ("True", "SessionStoreUnavailable")


def test_transition_time_moves_only_on_change() -> None:
    first = compute_status(observed(ROLLED), VoiceAgentStatus(), "T1")
    second = compute_status(observed(ROLLED), first, "T2")
    assert [c.last_transition_time for c in second.conditions] == ["T1", "T1", "T1"]
    d = DeploymentView(
        generation=3,
        observed_generation=3,
        desired=2,
        replicas=2,
        updated=2,
        ready=1,
        available=1,
        config_hash="h1",
    )
    third = compute_status(observed(d), second, "T3")
    ready = next(c for c in third.conditions if c.type == "Ready")
    assert (ready.status, ready.last_transition_time) == ("False", "T3")


def test_scaled_to_zero_is_ready() -> None:
    d = DeploymentView(generation=1, observed_generation=1, config_hash="h1")
    assert conds(compute_status(observed(d), VoiceAgentStatus(), NOW))["Ready"] == ("True", "ScaledToZero")


def test_a_failing_pod_degrades_with_its_reason() -> None:
    pulling = {
        "containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x:1"'}}}
        ]
    }
    crashing = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff", "message": ""}}}]}
    starting = {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}
    assert pod_problem("p0", starting) is None
    assert pod_problem("p0", {}) is None
    problems = (pod_problem("p1", pulling), pod_problem("p2", crashing))
    assert all(problems)
    st = compute_status(observed(ROLLED, pod_problems=problems), VoiceAgentStatus(), NOW)
    degraded = next(c for c in st.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ImagePullBackOff")
    assert 'pod p1: ImagePullBackOff: Back-off pulling image "x:1"' in degraded.message
    assert "pod p2: CrashLoopBackOff" in degraded.message


def test_rollout_status_is_carried_over_not_recomputed() -> None:
    rollout = RolloutStatus(
        phase="Progressing", stable_revision="r1", canary_revision="r2", step=1, weight=50
    )
    st = compute_status(observed(ROLLED), VoiceAgentStatus(rollout=rollout), NOW)
    assert st.rollout == rollout
    assert st.dump()["rollout"]["canaryRevision"] == "r2"  # so a status patch never resets it
