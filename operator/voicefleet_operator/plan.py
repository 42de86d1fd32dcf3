"""The periodic check of one VoiceAgent, as a pure plan.

Every few seconds the operator takes what its indexes hold (the Deployment, the
pods), what Redis reports (or that Redis did not answer) and what it remembers
from the previous check, and ``plan_check`` decides: repair the children? scale
to N? which pod-deletion-costs to write (before a scale-down, on a slow refresh)?
which status to patch? what to say? handlers.observe carries the plan out (costs
before scaling); nothing here does I/O.

A Redis outage freezes what depends on session counts: no scaling, no cost
writes (the refresh stays due), status keeps its last counts. It is said once
when it starts and once when it ends. Counts are trusted again once the pods
have had time to re-register (Redis may come back empty), then the overdue
refresh runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent_pod.sessions.fleet_state import FleetState

from .autoscale import Recommendation, decide
from .deletion_cost import cost_writes
from .events import Event
from .flow_check import FLOW_CONDITION, flow_condition
from .render import selector_string
from .rollout import Observation as RolloutObservation
from .rollout import RolloutDecision
from .rollout import decide as decide_rollout
from .spec import RolloutStatus, VoiceAgentSpec, VoiceAgentStatus
from .status import DeploymentView, FleetView, Observed, PodProblem, compute_status


@dataclass(frozen=True)
class PodView:
    """The parts of an agent pod the check needs (kept in the operator's index)."""

    name: str
    cost: str | None
    terminating: bool
    problem: PodProblem | None = None


@dataclass(frozen=True)
class StoreDown:
    """The session store (Redis) could not be read."""

    error: str


@dataclass(frozen=True)
class Timing:
    status_min_interval: float = 5.0
    cost_refresh_interval: float = 60.0
    # After an outage Redis may come back empty (a restart without persistence): until the pods'
    # next heartbeats re-register them (they are stale after 6 s), its counts say "idle fleet".
    store_settle_seconds: float = 6.0


@dataclass(frozen=True)
class Reconciled:
    """What the last reconcile of the spec left behind (written by the reconcile handlers)."""

    applied_hash: str = ""  # what the stable Deployment should run (while a canary runs: what it runs)
    prompt_id: str = ""  # of applied_hash; empty when the spec's prompt is not the stable one's
    desired_hash: str = ""  # the revision the spec renders to (a canary while it differs)
    error: str = ""


@dataclass(frozen=True)
class CheckMemory:
    """What one check hands to the next; times are monotonic seconds, None for never."""

    scale_history: tuple[Recommendation, ...] = ()
    last_cost_refresh: float | None = None
    last_status_patch: float | None = None
    rolled_out_prompt: str = ""
    store_down: bool = False
    store_back_at: float | None = None  # when the store answered again after an outage
    rollout: RolloutStatus | None = None  # ahead of .status, which is patched at most every few s


@dataclass(frozen=True)
class CheckInput:
    name: str
    spec: VoiceAgentSpec
    generation: int
    previous: VoiceAgentStatus
    deployment: DeploymentView | None
    pods: tuple[PodView, ...]
    fleet: FleetState | StoreDown
    reconciled: Reconciled
    memory: CheckMemory
    now: float  # monotonic seconds
    wall: str  # RFC 3339, for condition transition times
    rollout: RolloutObservation | None = None  # None: nothing to decide (the spec did not render)
    epoch: float = 0.0  # wall-clock seconds, for rollout steps that survive an operator restart


@dataclass(frozen=True)
class Scale:
    current: int
    replicas: int

    @property
    def direction(self) -> str:
        return "up" if self.replicas > self.current else "down"


@dataclass(frozen=True)
class Plan:
    observed: VoiceAgentStatus  # what the status is now, patched or not (the gauges show it)
    memory: CheckMemory
    repair: str = ""  # why the children are re-applied; empty: no repair
    scale: Scale | None = None
    cost_writes: Mapping[str, int] = field(default_factory=dict)
    status_patch: VoiceAgentStatus | None = None
    events: tuple[Event, ...] = ()
    warnings: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()
    rollout: RolloutDecision | None = None


def plan_check(inp: CheckInput, timing: Timing) -> Plan:
    mem = inp.memory
    down = inp.fleet if isinstance(inp.fleet, StoreDown) else None
    warnings: list[str] = []
    infos: list[str] = []
    events: list[Event] = []
    if down is not None and not mem.store_down:
        warnings.append(
            f"{down.error} (autoscaling and pod-deletion-cost refresh hold still until it answers)"
        )
    store_back_at = mem.store_back_at
    if down is None and mem.store_down:
        infos.append(
            "session store reachable again; autoscaling and pod-deletion-cost refresh resume once the "
            "pods have re-registered"
        )
        store_back_at = inp.now
    settled = store_back_at is None or inp.now - store_back_at >= timing.store_settle_seconds
    counts = inp.fleet if isinstance(inp.fleet, FleetState) and settled else None

    replicas, scale, history = inp.spec.replicas, None, mem.scale_history
    if inp.spec.autoscaling.enabled and counts is not None:
        decision = decide(replicas, counts.live_sessions, inp.spec.autoscaling, history, inp.now)
        history = decision.history
        if decision.replicas != replicas:
            scale = Scale(replicas, decision.replicas)
            events.append(Event("Autoscaled", _scale_message(scale, counts.live_sessions, inp.spec)))
            replicas = decision.replicas

    # Right before the autoscaler lowers replicas (reconcile does the same for `kubectl scale`),
    # else on the slow refresh only: the annotation must not follow every change of load.
    costs: dict[str, int] = {}
    last_cost_refresh = mem.last_cost_refresh
    refresh_due = _due(mem.last_cost_refresh, inp.now, timing.cost_refresh_interval)
    scaling_down = scale is not None and scale.direction == "down"
    if counts is not None and (refresh_due or scaling_down):
        costs = cost_writes(counts, {p.name: p.cost for p in inp.pods if not p.terminating})
        last_cost_refresh = inp.now

    status = _status(inp, replicas)
    rollout_status = mem.rollout or inp.previous.rollout
    canary = None
    if inp.rollout is not None:
        canary = decide_rollout(inp.spec.rollout, rollout_status, inp.rollout, inp.epoch)
        rollout_status = canary.status
        events.extend(canary.events)
    status = status.model_copy(update={"rollout": rollout_status})
    patch, last_status_patch = None, mem.last_status_patch
    if _differs(inp.previous, status) and _due(mem.last_status_patch, inp.now, timing.status_min_interval):
        patch, last_status_patch = status, inp.now
        events.extend(transitions(inp.previous, status))

    return Plan(
        observed=status,
        memory=CheckMemory(
            scale_history=history,
            last_cost_refresh=last_cost_refresh,
            last_status_patch=last_status_patch,
            rolled_out_prompt=_rolled_out_prompt(inp),
            store_down=down is not None,
            store_back_at=None if down is not None or settled else store_back_at,
            rollout=rollout_status,
        ),
        repair=repair_reason(inp.deployment, inp.reconciled),
        scale=scale,
        cost_writes=costs,
        status_patch=patch,
        events=tuple(events),
        warnings=tuple(warnings),
        infos=tuple(infos),
        rollout=canary,
    )


def repair_reason(deployment: DeploymentView | None, reconciled: Reconciled) -> str:
    """Drift: a child deleted or edited by hand, or a reconcile that failed earlier."""
    if reconciled.error:
        return f"the last reconcile failed: {reconciled.error}"
    if deployment is None:
        return "the agent Deployment is missing"
    if deployment.config_hash != reconciled.applied_hash:
        return "the agent Deployment differs from the rendered configuration"
    return ""


def _due(last: float | None, now: float, interval: float) -> bool:
    return last is None or now - last >= interval


def _scale_message(scale: Scale, live: int, spec: VoiceAgentSpec) -> str:
    policy = spec.autoscaling
    return (
        f"{scale.current} -> {scale.replicas} replicas: {live} live sessions, "
        f"buffer {policy.buffer_sessions}, {policy.sessions_per_pod} per pod"
    )


def _rolled_out_prompt(inp: CheckInput) -> str:
    d = inp.deployment
    prompt = inp.reconciled.prompt_id
    if prompt and d is not None and d.config_hash == inp.reconciled.applied_hash and d.rolled_out:
        return prompt
    return inp.memory.rolled_out_prompt


def _status(inp: CheckInput, desired_replicas: int) -> VoiceAgentStatus:
    if isinstance(inp.fleet, StoreDown):
        fleet = FleetView(error=inp.fleet.error)
    else:
        fleet = FleetView(active_sessions=inp.fleet.live_sessions, capacity=inp.fleet.capacity)
    observed = Observed(
        generation=inp.generation,
        selector=selector_string(inp.name),
        prompt_version=_rolled_out_prompt(inp) or inp.previous.prompt_version,
        desired_replicas=desired_replicas,
        deployment=inp.deployment,
        fleet=fleet,
        config_hash=inp.reconciled.applied_hash,
        reconcile_error=inp.reconciled.error,
        pod_problems=tuple(p.problem for p in inp.pods if p.problem and not p.terminating),
        flow=flow_condition(inp.spec.flow),
    )
    return compute_status(observed, inp.previous, inp.wall)


def _differs(a: VoiceAgentStatus, b: VoiceAgentStatus) -> bool:
    strip = {"conditions": {"__all__": {"last_transition_time"}}}
    return a.model_dump(exclude=strip) != b.model_dump(exclude=strip)


# Conditions whose other status is a problem: that one is a Warning Event.
HEALTHY = {"Degraded": "False", FLOW_CONDITION: "True"}


def transitions(before: VoiceAgentStatus, after: VoiceAgentStatus) -> list[Event]:
    """An Event for each condition that changed its status (a first healthy Degraded or FlowValid is
    news to nobody and gets none)."""
    old = {c.type: c.status for c in before.conditions}
    out = []
    for c in after.conditions:
        first_healthy = c.type not in old and HEALTHY.get(c.type) == c.status
        if old.get(c.type) != c.status and not first_healthy:
            out.append(
                Event(
                    reason=f"{c.type}{c.status}",
                    message=f"{c.reason}: {c.message}" if c.message else c.reason,
                    warning=c.type in HEALTHY and HEALTHY[c.type] != c.status,
                )
            )
    return out
