"""The periodic check's plan: a table of situations and what the operator should do in each."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agent_pod.sessions.fleet_state import FleetState, fleet_state
from agent_pod.sessions.records import PodRecord
from voicefleet_operator.autoscale import Recommendation
from voicefleet_operator.plan import (
    CheckInput,
    CheckMemory,
    Plan,
    PodView,
    Reconciled,
    StoreDown,
    Timing,
    plan_check,
)
from voicefleet_operator.spec import VoiceAgentSpec, VoiceAgentStatus
from voicefleet_operator.status import DeploymentView, PodProblem

NOW = 1000.0
NOW_MS = 5_000_000
WALL = "2026-01-01T00:00:00Z"
TIMING = Timing(status_min_interval=5, cost_refresh_interval=60)
PROMPT = "v1@sha256:abc"
DOWN = StoreDown("session store unreachable: ConnectionError: refused")
AUTOSCALED = {"enabled": True, "minReplicas": 1, "maxReplicas": 10, "sessionsPerPod": 20}


def fleet(*pods: tuple[str, int, int]) -> FleetState:
    """Registered pods as (name, live sessions, placed load), all with a fresh heartbeat."""
    records = [(PodRecord(name=n, capacity=20, live=c, heartbeat_ms=NOW_MS), load) for n, c, load in pods]
    return fleet_state("ns", "desk", records, NOW_MS, 6000)


def deployment(replicas: int = 2, config_hash: str = "h1") -> DeploymentView:
    return DeploymentView(
        generation=3,
        observed_generation=3,
        desired=replicas,
        replicas=replicas,
        updated=replicas,
        ready=replicas,
        available=replicas,
        config_hash=config_hash,
    )


def base(**changes: Any) -> CheckInput:
    """Two pods, three live calls on the first, costs in step, everything rolled out; the previous
    status is what a check of that showed."""
    inp = CheckInput(
        name="desk",
        spec=VoiceAgentSpec.model_validate({"replicas": 2}),
        generation=3,
        previous=VoiceAgentStatus(),
        deployment=deployment(),
        pods=(PodView("desk-a", "3", False), PodView("desk-b", None, False)),
        fleet=fleet(("desk-a", 3, 3), ("desk-b", 0, 0)),
        reconciled=Reconciled(applied_hash="h1", prompt_id=PROMPT),
        memory=CheckMemory(last_cost_refresh=NOW - 10, last_status_patch=NOW - 10, rolled_out_prompt=PROMPT),
        now=NOW,
        wall=WALL,
    )
    inp = dataclasses.replace(inp, previous=plan_check(inp, TIMING).observed)
    return dataclasses.replace(inp, **changes)


def memory(**changes: Any) -> CheckMemory:
    return dataclasses.replace(base().memory, **changes)


def three_replicas() -> VoiceAgentStatus:
    spec = VoiceAgentSpec.model_validate({"replicas": 3})
    return plan_check(base(spec=spec, deployment=deployment(3)), TIMING).observed


def degraded_by_outage() -> VoiceAgentStatus:
    return plan_check(base(fleet=DOWN), TIMING).observed


@dataclasses.dataclass(frozen=True)
class Want:
    repair: str = ""  # a word the repair reason contains; empty: no repair
    scale: int | None = None
    costs: dict[str, int] = dataclasses.field(default_factory=dict)
    patched: bool = False
    events: tuple[str, ...] = ()
    warnings: int = 0
    infos: int = 0
    sessions: int = 3  # status.activeSessions
    refreshed: bool = False  # the cost refresh counts as done now
    store_down: bool = False


CASES: list[tuple[str, CheckInput, Want]] = [
    ("nothing to do", base(), Want()),
    (
        "cost refresh due: only changed costs are written",
        base(
            fleet=fleet(("desk-a", 3, 5), ("desk-b", 1, 1)),
            memory=memory(last_cost_refresh=NOW - 60),
        ),
        Want(costs={"desk-a": 5, "desk-b": 1}, refreshed=True, patched=True, sessions=4),
    ),
    (
        "cost refresh not due: costs are left alone",
        base(fleet=fleet(("desk-a", 3, 5), ("desk-b", 1, 1)), memory=memory(last_cost_refresh=NOW - 59)),
        Want(patched=True, sessions=4),
    ),
    (
        "first check after a restart refreshes costs, in step already",
        base(memory=memory(last_cost_refresh=None)),
        Want(refreshed=True),
    ),
    (
        "redis goes down: one warning, no scaling, no cost churn, last counts kept",
        base(
            spec=VoiceAgentSpec.model_validate({"replicas": 2, "autoscaling": AUTOSCALED}),
            fleet=DOWN,
            memory=memory(last_cost_refresh=NOW - 600),
        ),
        Want(warnings=1, patched=True, events=("DegradedTrue",), store_down=True),
    ),
    (
        "redis still down: quiet",
        base(
            spec=VoiceAgentSpec.model_validate({"replicas": 2, "autoscaling": AUTOSCALED}),
            fleet=DOWN,
            previous=degraded_by_outage(),
            memory=memory(last_cost_refresh=NOW - 600, store_down=True),
        ),
        Want(store_down=True),
    ),
    (
        "redis recovering: said once; counts wait for the pods to re-register",
        base(
            fleet=fleet(("desk-a", 2, 2), ("desk-b", 0, 0)),
            previous=degraded_by_outage(),
            memory=memory(last_cost_refresh=NOW - 600, store_down=True),
        ),
        Want(infos=1, patched=True, events=("DegradedFalse",), sessions=2),
    ),
    (
        "redis back empty (restarted without persistence): no scale-down on an idle-looking fleet",
        base(
            spec=VoiceAgentSpec.model_validate(
                {"replicas": 2, "autoscaling": {**AUTOSCALED, "scaleDownStabilizationSeconds": 0}}
            ),
            fleet=fleet(),
            previous=degraded_by_outage(),
            memory=memory(last_cost_refresh=NOW - 600, store_down=True),
        ),
        Want(infos=1, patched=True, events=("DegradedFalse",), sessions=0),
    ),
    (
        "redis back and the pods re-registered: the overdue refresh runs",
        base(
            fleet=fleet(("desk-a", 2, 2), ("desk-b", 0, 0)),
            memory=memory(last_cost_refresh=NOW - 600, store_back_at=NOW - TIMING.store_settle_seconds),
        ),
        Want(costs={"desk-a": 2}, refreshed=True, patched=True, sessions=2),
    ),
    (
        "scale up at once, costs left alone",
        base(
            spec=VoiceAgentSpec.model_validate({"replicas": 2, "autoscaling": AUTOSCALED}),
            fleet=fleet(("desk-a", 20, 20), ("desk-b", 21, 21)),
        ),
        Want(scale=3, patched=True, events=("Autoscaled",), sessions=41),
    ),
    (
        "scale down held by the stabilization window",
        base(
            spec=VoiceAgentSpec.model_validate(
                {"replicas": 3, "autoscaling": {**AUTOSCALED, "scaleDownStabilizationSeconds": 60}}
            ),
            deployment=deployment(3),
            memory=memory(scale_history=(Recommendation(NOW - 30, 3),)),
            previous=three_replicas(),
        ),
        Want(),
    ),
    (
        "scale down once the window has passed",
        base(
            spec=VoiceAgentSpec.model_validate(
                {"replicas": 3, "autoscaling": {**AUTOSCALED, "scaleDownStabilizationSeconds": 60}}
            ),
            deployment=deployment(3),
            pods=(PodView("desk-a", None, False), PodView("desk-b", None, False)),
            memory=memory(scale_history=(Recommendation(NOW - 61, 3),)),
            previous=three_replicas(),
        ),
        # Fresh costs first, although the slow refresh is not due: the idle pod goes.
        Want(scale=1, costs={"desk-a": 3}, refreshed=True, patched=True, events=("Autoscaled",)),
    ),
    (
        "missing Deployment is repaired",
        base(deployment=None),
        Want(repair="missing", patched=True, events=("ReadyFalse", "ProgressingTrue")),
    ),
    (
        "Deployment edited by hand is repaired",
        base(deployment=deployment(config_hash="h0")),
        Want(repair="differs", patched=True, events=("ReadyFalse", "ProgressingTrue")),
    ),
    (
        "a failed reconcile is retried and shown",
        base(reconciled=Reconciled(applied_hash="h1", prompt_id=PROMPT, error="Forbidden")),
        Want(repair="failed", patched=True, events=("DegradedTrue",)),
    ),
    (
        "draining pods get no cost and no blame",
        base(
            pods=(
                PodView("desk-a", "3", False),
                PodView("desk-b", None, False),
                PodView("desk-c", "9", True, PodProblem("desk-c", "CrashLoopBackOff", "")),
            ),
            fleet=fleet(("desk-a", 3, 3), ("desk-b", 0, 0), ("desk-c", 7, 7)),
            memory=memory(last_cost_refresh=NOW - 60),
        ),
        Want(refreshed=True, patched=True, sessions=10),
    ),
    (
        "a status change within the minimum interval waits",
        base(fleet=fleet(("desk-a", 4, 4), ("desk-b", 0, 0)), memory=memory(last_status_patch=NOW - 4)),
        Want(sessions=4),
    ),
]


@pytest.mark.parametrize(("situation", "inp", "want"), CASES, ids=[c[0] for c in CASES])
def test_plan(situation: str, inp: CheckInput, want: Want) -> None:
    plan = plan_check(inp, TIMING)
    assert (want.repair in plan.repair) if want.repair else plan.repair == ""
    assert (plan.scale.replicas if plan.scale else None) == want.scale
    assert dict(plan.cost_writes) == want.costs
    assert (plan.status_patch is not None) == want.patched
    assert tuple(e.reason for e in plan.events) == want.events
    assert (len(plan.warnings), len(plan.infos)) == (want.warnings, want.infos)
    assert plan.observed.active_sessions == want.sessions
    refreshed_at = NOW if want.refreshed else inp.memory.last_cost_refresh
    assert plan.memory.last_cost_refresh == refreshed_at
    assert plan.memory.store_down == want.store_down
    if plan.status_patch is not None:
        assert plan.memory.last_status_patch == NOW
        assert plan.status_patch.desired_replicas == (want.scale or inp.spec.replicas)


def run(inputs: list[CheckInput]) -> list[Plan]:
    """Successive checks, each with the memory and status the previous one left."""
    plans: list[Plan] = []
    memory, previous = inputs[0].memory, inputs[0].previous
    for inp in inputs:
        plan = plan_check(dataclasses.replace(inp, memory=memory, previous=previous), TIMING)
        memory, previous = plan.memory, plan.status_patch or previous
        plans.append(plan)
    return plans


def test_a_redis_outage_is_said_once_and_costs_catch_up_after_it() -> None:
    ticks = [NOW + 2 * i for i in range(64)]  # two minutes of checks every 2 s, then 8 s back
    inputs = [base(fleet=DOWN, now=t) for t in ticks[:59]]
    inputs += [base(fleet=fleet(("desk-a", 1, 1), ("desk-b", 0, 0)), now=t) for t in ticks[59:]]
    plans = run(inputs)
    assert sum(len(p.warnings) for p in plans) == 1 and plans[0].warnings
    assert sum(len(p.infos) for p in plans) == 1 and plans[59].infos
    # Back at ticks[59]: the pods have re-registered 6 s later, and the overdue refresh runs then.
    assert all(not p.cost_writes and p.scale is None for p in plans[:62])
    assert dict(plans[62].cost_writes) == {"desk-a": 1} and not plans[63].cost_writes
    assert [p.observed.active_sessions for p in plans[:59]] == [3] * 59  # the last known count
    assert sum(p.status_patch is not None for p in plans) == 2  # degraded, then healthy again
