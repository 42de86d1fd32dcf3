"""The VoiceAgent status, computed from what the cluster and Redis report (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .flow_check import FLOW_CONDITION
from .spec import Condition, VoiceAgentStatus


@dataclass(frozen=True)
class DeploymentView:
    """The parts of a Deployment the status needs (kept in the operator's index)."""

    generation: int = 0
    observed_generation: int = 0
    desired: int = 0
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    config_hash: str = ""
    progress_deadline_exceeded: bool = False
    replica_failure: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any], hash_annotation: str) -> DeploymentView:
        meta, spec, st = body.get("metadata", {}), body.get("spec", {}), body.get("status", {}) or {}
        conds = {c.get("type"): c for c in st.get("conditions", []) or []}
        progressing = conds.get("Progressing", {})
        failure = conds.get("ReplicaFailure", {})
        return cls(
            generation=int(meta.get("generation", 0)),
            observed_generation=int(st.get("observedGeneration", 0)),
            desired=int(spec.get("replicas", 0) or 0),
            replicas=int(st.get("replicas", 0) or 0),
            updated=int(st.get("updatedReplicas", 0) or 0),
            ready=int(st.get("readyReplicas", 0) or 0),
            available=int(st.get("availableReplicas", 0) or 0),
            config_hash=(meta.get("annotations") or {}).get(hash_annotation, ""),
            progress_deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
            replica_failure=failure.get("message", "") if failure.get("status") == "True" else "",
        )

    @property
    def rolled_out(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.replicas == self.desired
            and self.available == self.desired
        )


# Container states that no amount of waiting fixes: the pod shows why it cannot serve.
FAILING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "StartError",
    }
)


@dataclass(frozen=True)
class PodProblem:
    pod: str
    reason: str
    message: str


def pod_problem(name: str, pod_status: dict[str, Any]) -> PodProblem | None:
    """Why a pod cannot serve, from its container statuses (None while it is fine or just starting)."""
    containers = [
        *(pod_status.get("initContainerStatuses") or []),
        *(pod_status.get("containerStatuses") or []),
    ]
    for c in containers:
        state = c.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in FAILING_REASONS:
            return PodProblem(name, waiting["reason"], (waiting.get("message") or "")[:200])
        terminated = state.get("terminated") or {}
        if terminated.get("reason") in FAILING_REASONS:
            return PodProblem(name, terminated["reason"], (terminated.get("message") or "")[:200])
    return None


@dataclass(frozen=True)
class FleetView:
    """Session load from the Redis registry; None fields mean Redis could not be read."""

    active_sessions: int | None = None
    capacity: int | None = None
    error: str = ""


@dataclass(frozen=True)
class Observed:
    generation: int
    selector: str
    prompt_version: str
    desired_replicas: int
    deployment: DeploymentView | None
    fleet: FleetView = field(default_factory=FleetView)
    config_hash: str = ""
    reconcile_error: str = ""
    pod_problems: tuple[PodProblem, ...] = ()
    flow: tuple[bool, str, str] | None = None  # FlowValid (flow_check.py); None: the agent has no flow


def condition(
    previous: dict[str, Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> Condition:
    value: Literal["True", "False"] = "True" if status else "False"
    before = previous.get(type_)
    changed = before is None or before.status != value
    return Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=now if changed else before.last_transition_time,  # type: ignore[union-attr]
        observed_generation=generation,
    )


def compute_status(observed: Observed, previous: VoiceAgentStatus, now: str) -> VoiceAgentStatus:
    d = observed.deployment
    prev = {c.type: c for c in previous.conditions}
    gen = observed.generation
    fleet = observed.fleet

    if d is None:
        progressing = (True, "Creating", "creating the agent Deployment")
        ready = (False, "Creating", "the agent Deployment does not exist yet")
    else:
        current_config = not observed.config_hash or d.config_hash == observed.config_hash
        if not current_config or not d.rolled_out:
            progressing = (
                True,
                "RollingOut",
                f"{d.updated}/{d.desired} pods updated, {d.ready} ready, {d.replicas} in total",
            )
        else:
            progressing = (False, "RolledOut", f"{d.desired} pods at the current revision")
        if d.desired == 0:
            ready = (True, "ScaledToZero", "no pods requested")
        elif d.ready >= d.desired and current_config and d.rolled_out:
            ready = (True, "AllPodsReady", f"{d.ready}/{d.desired} pods ready")
        elif d.ready > 0:
            ready = (False, "PartiallyReady", f"{d.ready}/{d.desired} pods ready")
        else:
            ready = (False, "NoPodsReady", f"0/{d.desired} pods ready")

    problems = []
    if observed.reconcile_error:
        problems.append(("ReconcileFailed", observed.reconcile_error))
    if d is not None and d.progress_deadline_exceeded:
        problems.append(("ProgressDeadlineExceeded", "the rollout made no progress within its deadline"))
    if d is not None and d.replica_failure:
        problems.append(("ReplicaFailure", d.replica_failure))
    for pp in observed.pod_problems[:3]:
        problems.append((pp.reason, f"pod {pp.pod}: {pp.reason}" + (f": {pp.message}" if pp.message else "")))
    if fleet.error:
        problems.append(("SessionStoreUnavailable", fleet.error))
    degraded = (
        bool(problems),
        problems[0][0] if problems else "AsExpected",
        "; ".join(m for _, m in problems) if problems else "",
    )

    conditions = [
        condition(prev, "Ready", *ready, gen, now),
        condition(prev, "Progressing", *progressing, gen, now),
        condition(prev, "Degraded", *degraded, gen, now),
    ]
    if observed.flow is not None:
        conditions.append(condition(prev, FLOW_CONDITION, *observed.flow, gen, now))
    return VoiceAgentStatus(
        replicas=d.replicas if d else 0,
        ready_replicas=d.ready if d else 0,
        active_sessions=fleet.active_sessions
        if fleet.active_sessions is not None
        else previous.active_sessions,
        capacity=fleet.capacity if fleet.capacity is not None else previous.capacity,
        selector=observed.selector,
        prompt_version=observed.prompt_version,
        desired_replicas=observed.desired_replicas,
        observed_generation=gen,
        conditions=conditions,
        rollout=previous.rollout,  # decided by rollout.decide, not from the children
    )
