"""Canary rollouts: the I/O around ``rollout.decide``.

Each check of a VoiceAgent gathers what the decision needs (``observe``: the canary Deployment, its
eval Job's outcome, each revision's counters from Redis since the last measurement, a command
annotation), and afterwards carries the decision out (``carry_out``: the canary Deployment scaled to
the step or to 0, the eval Job, the split placement reads from Redis, the rollout metrics). Reading
what was observed (eval outcomes, windows, commands) is pure and tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent_pod.sessions.revision_stats import RevisionCounters

from . import operator_metrics
from .fleet_reader import FleetReader
from .kube import Kube
from .plan import StoreDown
from .render import Children, Owner
from .render_canary import canary_children, canary_name, eval_job, eval_job_name
from .rollout import (
    ACTIVE,
    Command,
    EvalError,
    EvalFinished,
    EvalOutcome,
    EvalRunning,
    MetricsUnreadable,
    Observation,
    RevisionWindow,
    RolloutDecision,
    Windows,
)
from .spec import RolloutStatus, VoiceAgentSpec
from .status import DeploymentView

COMMAND_ANNOTATION = "voicefleet.io/rollout-command"
COMMANDS: dict[str, Command] = {"promote": "promote", "abort": "abort", "resume": "resume"}
# Phases in which placement follows a canary weight (Promoting: 100, the promoted revision).
WEIGHTED_PHASES = frozenset({*ACTIVE, "Promoting"})


@dataclass(frozen=True)
class EvalJobView:
    """The parts of an eval Job the decision needs (kept in the operator's index)."""

    active: int = 0
    succeeded: int = 0
    failed: int = 0
    failure: str = ""  # the Job's Failed condition message (deadline exceeded, backoff limit)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> EvalJobView:
        st = body.get("status") or {}
        failed = next(
            (
                c
                for c in st.get("conditions") or []
                if c.get("type") == "Failed" and c.get("status") == "True"
            ),
            None,
        )
        return cls(
            active=int(st.get("active") or 0),
            succeeded=int(st.get("succeeded") or 0),
            failed=int(st.get("failed") or 0),
            failure=f"{failed.get('reason', '')}: {failed.get('message', '')}" if failed else "",
        )


def termination_message(pod_status: dict[str, Any]) -> str | None:
    """What the eval container wrote to its termination log, once it has terminated."""
    for container in pod_status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated is not None:
            return str(terminated.get("message") or "")
    return None


def eval_outcome(job: EvalJobView | None, message: str | None) -> EvalOutcome | None:
    """The eval run's outcome: None before its Job is seen; running until its pod has terminated.

    The summary in the termination message decides (``voicefleet eval --termination-log``): a run
    whose scenarios failed exits 1 but is a finished eval with a pass rate, not an error."""
    if job is None:
        return None
    if message:
        try:
            summary = json.loads(message)
            return EvalFinished(passed=int(summary["passed"]), total=int(summary["total"]))
        except (ValueError, KeyError, TypeError):
            if job.failed or job.succeeded:
                return EvalError(f"the eval Job ended without a summary: {message[-300:]}")
    if job.failure:
        return EvalError(job.failure)
    if job.failed:
        return EvalError("the eval Job failed without a summary")
    if job.succeeded and message is not None:
        return EvalError("the eval Job succeeded without a summary")
    return EvalRunning()


def command(annotations: dict[str, str]) -> Command | None:
    return COMMANDS.get(annotations.get(COMMAND_ANNOTATION, "").strip().lower())


def _window(now: RevisionCounters, since: RevisionCounters | None) -> RevisionWindow:
    delta = now.minus(since) if since is not None else now
    return RevisionWindow(
        sessions=delta.sessions,
        turns=delta.turns,
        turn_errors=delta.turn_errors,
        tool_calls=delta.tool_calls,
        tool_failures=delta.tool_failures,
        audited_turns=delta.audited_turns,
        divergence_flags=delta.divergence_flags,
        interruptions=delta.interruptions,
        response_ms_buckets=tuple(delta.latency_buckets),
    )


@dataclass
class Baselines:
    """Each revision's counters at the last measurement: the next window starts there. Held in
    memory; after an operator restart the first window counts from the revision's start."""

    counters: dict[str, RevisionCounters] = field(default_factory=dict)

    def windows(
        self, read: dict[str, RevisionCounters] | StoreDown, canary: str, stable: str
    ) -> Windows | MetricsUnreadable:
        if isinstance(read, StoreDown):
            return MetricsUnreadable(read.error)
        empty = RevisionCounters()
        return Windows(
            canary=_window(read.get(canary, empty), self.counters.get(canary)),
            stable=_window(read.get(stable, empty), self.counters.get(stable)),
        )

    def reset(self, read: dict[str, RevisionCounters] | StoreDown) -> None:
        if not isinstance(read, StoreDown):
            self.counters = dict(read)


def needs_counters(status: RolloutStatus) -> bool:
    """Counters are read only while a canary is judged (Redis is not asked every check otherwise)."""
    return status.phase in ACTIVE and bool(status.canary_revision)


@dataclass
class CanaryMemo:
    """What the operator remembers of one VoiceAgent's canary between checks."""

    baselines: Baselines = field(default_factory=Baselines)
    last_read: dict[str, RevisionCounters] | StoreDown = field(default_factory=dict)
    # No split in Redis: it is written every check while a canary runs, and cleared once after.
    split_cleared: bool = True


@dataclass(frozen=True)
class Seen:
    """What the check already knows of the VoiceAgent (from its indexes and its last reconcile)."""

    namespace: str
    name: str
    spec: VoiceAgentSpec
    rollout: RolloutStatus  # the operator's latest (ahead of .status)
    desired_revision: str
    stable: DeploymentView | None
    canary: DeploymentView | None
    annotations: dict[str, str]


EvalLookup = Callable[[str], tuple[EvalJobView | None, str | None]]  # Job name -> Job, pod message


async def observe(fleet: FleetReader, memo: CanaryMemo, seen: Seen, eval_lookup: EvalLookup) -> Observation:
    current, canary_view = seen.rollout, seen.canary
    canary_ready = (
        canary_view is not None
        and bool(current.canary_revision)
        and canary_view.config_hash == current.canary_revision
        and canary_view.desired > 0
        and canary_view.rolled_out
    )
    window: Windows | MetricsUnreadable = Windows()
    if needs_counters(current):
        revisions = [current.canary_revision, current.stable_revision]
        memo.last_read = await fleet.read_revision_counters(seen.namespace, seen.name, seen.spec, revisions)
        window = memo.baselines.windows(memo.last_read, current.canary_revision, current.stable_revision)
    outcome = None
    if current.canary_revision and current.eval_started_at is not None:
        job = eval_job_name(seen.name, current.canary_revision, current.eval_started_at)
        outcome = eval_outcome(*eval_lookup(job))
    stable = seen.stable
    return Observation(
        desired_revision=seen.desired_revision,
        stable_revision=stable.config_hash if stable is not None else "",
        canary_ready=canary_ready,
        window=window,
        eval=outcome,
        command=command(seen.annotations),
        stable_rolled_out=stable is not None and stable.rolled_out,
        replicas=stable.desired if stable is not None else seen.spec.replicas,
    )


async def carry_out(
    kube: Kube,
    fleet: FleetReader,
    memo: CanaryMemo,
    owner: Owner,
    spec: VoiceAgentSpec,
    decision: RolloutDecision,
    measured: bool,
    canary_view: DeploymentView | None,
    render_desired: Callable[[], Awaitable[Children]],
) -> None:
    """Makes the cluster and Redis match a rollout decision; every step is idempotent, so a check
    that fails half-way is finished by the next. (Promotion itself is the stable Deployment's
    reconcile, which handlers.py runs.)"""
    st, action = decision.status, decision.action
    if decision.consume_window:
        memo.baselines.reset(memo.last_read)
    wanted = decision.canary_replicas if st.canary_revision else 0
    if action in ("start_canary", "start_eval", "set_weight") or (
        canary_view is not None and canary_view.desired != wanted
    ):
        children = await render_desired()
        canary = canary_children(owner, children, wanted)
        if wanted > 0 and children.config_hash == st.canary_revision:
            for obj in canary.all():
                await kube.apply(obj)
        elif canary_view is not None:
            await kube.set_replicas(owner.namespace, canary_name(owner.name), 0)
        if action == "start_eval" and st.eval_started_at is not None:
            await kube.apply(eval_job(owner, spec, st.canary_revision, st.eval_started_at, canary))
    weighted = st.phase in WEIGHTED_PHASES and bool(st.canary_revision)
    if weighted:
        # Every check: one small write, and a Redis that lost its data gets the split back at once.
        await fleet.set_rollout(owner.namespace, owner.name, spec, st.canary_revision, decision.weight)
        memo.split_cleared = False
    elif not memo.split_cleared:
        await fleet.clear_rollout(owner.namespace, owner.name, spec)
        memo.split_cleared = True
    _metrics(owner, decision, measured, weighted)


def _metrics(owner: Owner, decision: RolloutDecision, measured: bool, weighted: bool) -> None:
    st, action = decision.status, decision.action
    operator_metrics.ROLLOUT_WEIGHT.labels(owner.namespace, owner.name).set(
        decision.weight if weighted else 0
    )
    for phase in operator_metrics.ROLLOUT_PHASES:
        operator_metrics.ROLLOUT_PHASE.labels(owner.namespace, owner.name, phase).set(int(phase == st.phase))
    if measured and st.last_result is not None:
        operator_metrics.ROLLOUT_MEASUREMENTS.labels(st.last_result).inc()
    if action in ("promote", "rollback"):
        operator_metrics.ROLLOUT_OUTCOMES.labels("promoted" if action == "promote" else "rolled_back").inc()
