"""Canary rollouts: the I/O around ``rollout.decide``.

Each check of a VoiceAgent gathers what the decision needs (the canary Deployment, its eval Job's
outcome, each revision's counters from Redis since the last measurement, a command annotation),
and afterwards carries the decision out: the canary Deployment (scaled to the step, or to 0), the
eval Job, the weight placement reads from Redis. Parsing what was observed stays pure here;
handlers.py does the calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent_pod.sessions.revision_stats import RevisionCounters

from .plan import StoreDown
from .rollout import (
    ACTIVE,
    Command,
    EvalError,
    EvalFinished,
    EvalOutcome,
    EvalRunning,
    MetricsUnreadable,
    RevisionWindow,
    Windows,
)
from .spec import RolloutStatus

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
