"""Canary rollouts: a table of (spec, status, observation, time) -> (phase, weight, action, events),
sequences of checks as the operator would run them, and properties that hold for any input."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicefleet_operator.rollout import (
    EvalError,
    EvalFinished,
    EvalRunning,
    MetricsUnreadable,
    Observation,
    RevisionWindow,
    RolloutDecision,
    Windows,
    decide,
    measure,
    p95_ms,
)
from voicefleet_operator.spec import AnalysisSpec, RolloutSpec, RolloutStatus

T0 = 1_700_000_000.0  # when the current step's weight was set
STABLE, CANARY, NEWER = "r1-stable", "r2-canary", "r3-newer"
INF = math.inf


def spec(**changes: Any) -> RolloutSpec:
    """Two timed steps (10% then 50%, 60 s each), a measurement every 30 s, every threshold set."""
    body: dict[str, Any] = {
        "strategy": "canary",
        "steps": [{"weight": 10, "pauseSeconds": 60}, {"weight": 50, "pauseSeconds": 60}],
        "analysis": {
            "intervalSeconds": 30,
            "minTurns": 10,
            "maxTurnErrorRate": 0.1,
            "maxResponseP95Ms": 1500,
            "maxToolFailureRate": 0.2,
            "maxDivergenceFlagRate": 0.1,
            "maxInterruptionRate": 0.5,
            "maxP95IncreaseOverStable": 1.5,
        },
    }
    analysis = changes.pop("analysis", {})
    body["analysis"] = {k: v for k, v in {**body["analysis"], **analysis}.items() if v is not None}
    return RolloutSpec.model_validate({**body, **changes})


EVAL = {"suites": ["smoke"], "minPassRate": 0.9, "timeoutSeconds": 600}
MANUAL_FIRST = [{"weight": 10}, {"weight": 50, "pauseSeconds": 60}]
MANUAL_LAST = [{"weight": 10, "pauseSeconds": 60}, {"weight": 50}]
THRESHOLDS = (
    "maxTurnErrorRate",
    "maxResponseP95Ms",
    "maxToolFailureRate",
    "maxDivergenceFlagRate",
    "maxInterruptionRate",
    "maxP95IncreaseOverStable",
)
ONLY_TOOLS = {k: None for k in THRESHOLDS if k != "maxToolFailureRate"}


def served(**changes: Any) -> RevisionWindow:
    """A healthy window: 40 turns, 1 error, 10 tool calls, p95 in the 1000 ms bucket."""
    base = RevisionWindow(
        sessions=8,
        turns=40,
        turn_errors=1,
        tool_calls=10,
        tool_failures=1,
        audited_turns=20,
        divergence_flags=1,
        interruptions=4,
        response_ms_buckets=((250.0, 10), (500.0, 30), (1000.0, 39), (2000.0, 40), (INF, 40)),
    )
    return dataclasses.replace(base, **changes)


GOOD = Windows(canary=served(), stable=served(turns=400, turn_errors=8))


def canary(**changes: Any) -> Windows:
    return Windows(canary=served(**changes), stable=GOOD.stable)


def status(**changes: Any) -> RolloutStatus:
    """Canary r2 at step 1 (10%) since T0, measured at T0."""
    base = RolloutStatus(
        phase="Progressing",
        stable_revision=STABLE,
        canary_revision=CANARY,
        step=0,
        weight=10,
        step_started_at=T0,
        last_measured_at=T0,
    )
    return base.model_copy(update=changes)


STEADY = RolloutStatus(stable_revision=STABLE)
EVALUATING = status(phase="Evaluating", weight=0, step_started_at=None, last_measured_at=None)
WAITING = status(weight=0, step_started_at=None, last_measured_at=None)
SUCCEEDED = {"successful": 1, "step_successful": 1, "last_result": "successful"}
LAST_STEP = status(step=1, weight=50)
PROMOTING = status(phase="Promoting", step=1, weight=100)


def obs(**changes: Any) -> Observation:
    base = Observation(
        desired_revision=CANARY, stable_revision=STABLE, canary_ready=True, window=GOOD, replicas=10
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass(frozen=True)
class Want:
    phase: str
    weight: int
    action: str = "none"
    events: tuple[str, ...] = ()
    consume: bool | None = None  # None: not checked
    canary_replicas: int | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)  # status fields


Case = tuple[str, RolloutSpec, RolloutStatus, Observation, float, Want]
MEASURE = T0 + 30  # a measurement is due, the 60 s pause is not over
AFTER_PAUSE = T0 + 60  # a measurement is due and the pause is over

CASES: list[Case] = [
    # --- canary pods that do not become ready ---------------------------------------------------------
    (
        "canary pods not ready yet: wait, and note since when",
        spec(),
        WAITING,
        obs(canary_ready=False),
        T0 + 5,
        Want("Progressing", 0, fields={"waiting_since": T0 + 5}),
    ),
    (
        "canary pods still not ready within readyTimeoutSeconds: keep waiting",
        spec(),
        WAITING.model_copy(update={"waiting_since": T0}),
        obs(canary_ready=False),
        T0 + 600,
        Want("Progressing", 0, fields={"waiting_since": T0}),
    ),
    (
        "canary pods not ready beyond readyTimeoutSeconds (image pull, crash loop): rollback",
        spec(),
        WAITING.model_copy(update={"waiting_since": T0}),
        obs(canary_ready=False),
        T0 + 601,
        Want(
            "RolledBack",
            0,
            "rollback",
            ("CanaryNotReady", "CanaryRolledBack"),
            canary_replicas=0,
            fields={"failed_revision": CANARY, "waiting_since": None},
        ),
    ),
    (
        "an eval that cannot start because the canary pods never come up: rollback",
        spec(eval={"suites": ["smoke"]}),
        EVALUATING.model_copy(update={"waiting_since": T0}),
        obs(canary_ready=False),
        T0 + 601,
        Want("RolledBack", 0, "rollback", ("CanaryNotReady", "CanaryRolledBack")),
    ),
    (
        "the pods come up in time: the step starts and the wait is over",
        spec(),
        WAITING.model_copy(update={"waiting_since": T0}),
        obs(),
        T0 + 20,
        Want("Progressing", 10, "set_weight", ("CanaryStep",), fields={"waiting_since": None}),
    ),
    # --- no canary ---------------------------------------------------------------------------------
    (
        "rolling strategy: every pod rolls, as before",
        spec(strategy="rolling"),
        STEADY,
        obs(canary_ready=False),
        T0,
        Want("Stable", 0, fields={"stable_revision": CANARY, "canary_revision": ""}, canary_replicas=0),
    ),
    (
        "first deploy: stable at once, no canary",
        spec(),
        RolloutStatus(),
        obs(stable_revision="", canary_ready=False),
        T0,
        Want("Stable", 0, fields={"stable_revision": CANARY}),
    ),
    (
        "desired is the stable revision: nothing to do",
        spec(),
        STEADY,
        obs(desired_revision=STABLE),
        T0,
        Want("Stable", 0, fields={"stable_revision": STABLE}),
    ),
    (
        "strategy turned rolling mid-canary: the canary is dropped",
        spec(strategy="rolling"),
        status(),
        obs(),
        MEASURE,
        Want("Stable", 0, "finish_promotion", ("CanaryDropped",), fields={"stable_revision": CANARY}),
    ),
    (
        "operator restart before the stable Deployment is seen: the canary goes on",
        spec(),
        status(),
        obs(stable_revision=""),
        T0 + 10,
        Want("Progressing", 10),
    ),
    (
        "the spec could not be rendered: nothing changes",
        spec(),
        status(),
        obs(desired_revision="", window=canary(turn_errors=40)),
        AFTER_PAUSE,
        Want("Progressing", 10, consume=False, fields={"failed": 0}),
    ),
    # --- a canary starts ---------------------------------------------------------------------------
    (
        "a new revision starts a canary at weight 0",
        spec(),
        STEADY,
        obs(canary_ready=False),
        T0,
        Want(
            "Progressing",
            0,
            "start_canary",
            ("CanaryStarted",),
            consume=True,
            canary_replicas=1,
            fields={"canary_revision": CANARY, "stable_revision": STABLE},
        ),
    ),
    (
        "with an eval gate the canary starts Evaluating",
        spec(eval=EVAL),
        STEADY,
        obs(canary_ready=False),
        T0,
        Want("Evaluating", 0, "start_canary", ("CanaryStarted",), canary_replicas=1),
    ),
    (
        "a rolled-back revision is not tried again",
        spec(),
        RolloutStatus(phase="RolledBack", stable_revision=STABLE, failed_revision=CANARY),
        obs(),
        T0,
        Want("RolledBack", 0, canary_replicas=0, fields={"failed_revision": CANARY}),
    ),
    (
        "after a rollback a changed spec starts a new canary",
        spec(),
        RolloutStatus(phase="RolledBack", stable_revision=STABLE, failed_revision=CANARY),
        obs(desired_revision=NEWER),
        T0,
        Want("Progressing", 0, "start_canary", ("CanaryStarted",), fields={"failed_revision": ""}),
    ),
    (
        "after a rollback the spec reverted to stable: Stable again",
        spec(),
        RolloutStatus(phase="RolledBack", stable_revision=STABLE, failed_revision=CANARY),
        obs(desired_revision=STABLE),
        T0,
        Want("Stable", 0, events=("RolloutStable",), fields={"failed_revision": ""}),
    ),
    # --- canary pods -------------------------------------------------------------------------------
    (
        "canary pods not ready: weight stays 0",
        spec(),
        WAITING,
        obs(canary_ready=False),
        T0,
        Want("Progressing", 0, canary_replicas=1),
    ),
    (
        "canary pods ready: the first step's weight is set and the window starts",
        spec(),
        WAITING,
        obs(),
        T0,
        Want(
            "Progressing",
            10,
            "set_weight",
            ("CanaryStep",),
            consume=True,
            canary_replicas=1,
            fields={"step_started_at": T0, "last_measured_at": T0},
        ),
    ),
    (
        "a first step without pauseSeconds is Paused at once",
        spec(steps=MANUAL_FIRST),
        WAITING,
        obs(),
        T0,
        Want("Paused", 10, "set_weight", ("CanaryStep", "CanaryPaused"), fields={"pause_reason": "manual"}),
    ),
    # --- eval gate ---------------------------------------------------------------------------------
    (
        "eval waits for the canary pods",
        spec(eval=EVAL),
        EVALUATING,
        obs(canary_ready=False),
        T0,
        Want("Evaluating", 0, fields={"eval_started_at": None}),
    ),
    (
        "eval starts once the canary pods are ready",
        spec(eval=EVAL),
        EVALUATING,
        obs(),
        T0,
        Want(
            "Evaluating", 0, "start_eval", ("EvalStarted",), canary_replicas=1, fields={"eval_started_at": T0}
        ),
    ),
    (
        "eval running within its timeout",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalRunning()),
        T0 + 600,
        Want("Evaluating", 0),
    ),
    (
        "eval past its timeout rolls back",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalRunning()),
        T0 + 601,
        Want(
            "RolledBack",
            0,
            "rollback",
            ("EvalFailed", "CanaryRolledBack"),
            fields={"failed_revision": CANARY},
        ),
    ),
    (
        "eval Job lost after it started: the timeout still applies",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=None),
        T0 + 601,
        Want("RolledBack", 0, "rollback", ("EvalFailed", "CanaryRolledBack")),
    ),
    (
        "eval pass rate at minPassRate: the first step starts, eval traffic is not judged",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalFinished(passed=9, total=10)),
        T0 + 100,
        Want(
            "Progressing",
            10,
            "set_weight",
            ("EvalPassed", "CanaryStep"),
            consume=True,
            fields={"eval_pass_rate": 0.9, "step_started_at": T0 + 100},
        ),
    ),
    (
        "eval pass rate below minPassRate rolls back",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalFinished(passed=8, total=10)),
        T0 + 100,
        Want("RolledBack", 0, "rollback", ("EvalFailed", "CanaryRolledBack"), fields={"eval_pass_rate": 0.8}),
    ),
    (
        "eval error rolls back",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalError("suite ConfigMap smoke not found")),
        T0 + 100,
        Want("RolledBack", 0, "rollback", ("EvalFailed", "CanaryRolledBack")),
    ),
    (
        "eval with no cases is not a pass",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(eval=EvalFinished(passed=0, total=0)),
        T0 + 100,
        Want("RolledBack", 0, "rollback", ("EvalFailed", "CanaryRolledBack")),
    ),
    (
        "eval gate removed from the spec while evaluating: the first step starts",
        spec(),
        EVALUATING,
        obs(),
        T0,
        Want("Progressing", 10, "set_weight", ("EvalSkipped", "CanaryStep")),
    ),
    # --- measurements ------------------------------------------------------------------------------
    (
        "no measurement before intervalSeconds",
        spec(),
        status(),
        obs(window=canary(turn_errors=40)),
        T0 + 29,
        Want("Progressing", 10, consume=False, canary_replicas=1, fields={"failed": 0}),
    ),
    (
        "a successful measurement before the pause ends: no advance",
        spec(),
        status(),
        obs(),
        MEASURE,
        Want("Progressing", 10, consume=True, fields={"successful": 1, "last_measured_at": MEASURE}),
    ),
    (
        "turn error rate above its threshold rolls back at the first failure",
        spec(),
        status(),
        obs(window=canary(turn_errors=10)),
        MEASURE,
        Want(
            "RolledBack",
            0,
            "rollback",
            ("AnalysisFailed", "CanaryRolledBack"),
            consume=True,
            canary_replicas=0,
            fields={"failed": 1, "failed_revision": CANARY, "canary_revision": ""},
        ),
    ),
    (
        "failureLimit 1 tolerates one failed measurement",
        spec(analysis={"failureLimit": 1}),
        status(),
        obs(window=canary(turn_errors=10)),
        MEASURE,
        Want("Progressing", 10, events=("AnalysisFailed",), fields={"failed": 1}),
    ),
    (
        "failureLimit 1: the second failed measurement rolls back",
        spec(analysis={"failureLimit": 1}),
        status(failed=1),
        obs(window=canary(turn_errors=10)),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "response p95 above maxResponseP95Ms fails",
        spec(),
        status(),
        obs(window=canary(response_ms_buckets=((1000.0, 30), (2000.0, 40), (INF, 40)))),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "tool failure rate above its threshold fails",
        spec(),
        status(),
        obs(window=canary(tool_failures=3)),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "divergence flag rate above its threshold fails",
        spec(),
        status(),
        obs(window=canary(divergence_flags=3)),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "interruption rate above its threshold fails",
        spec(),
        status(),
        obs(window=canary(interruptions=21)),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "canary p95 above 1.5 x stable p95 fails",
        spec(analysis={"maxResponseP95Ms": None}),
        status(),
        obs(
            window=Windows(
                canary=served(response_ms_buckets=((500.0, 10), (1000.0, 30), (2000.0, 40), (INF, 40))),
                stable=served(turns=400, response_ms_buckets=((500.0, 380), (1000.0, 400), (INF, 400))),
            )
        ),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "argo-rollouts#1466: zero canary turns is no data, not a crash",
        spec(),
        status(),
        obs(window=canary(turns=0, turn_errors=0, tool_calls=0, tool_failures=0, response_ms_buckets=())),
        MEASURE,
        Want("Progressing", 10, events=("AnalysisNoData",), fields={"no_data": 1, "last_result": "no_data"}),
    ),
    (
        "argo-rollouts#1466: zero tool calls, no audits, no latency samples: those thresholds have no data",
        spec(),
        status(),
        obs(
            window=canary(
                tool_calls=0, tool_failures=0, audited_turns=0, divergence_flags=0, response_ms_buckets=()
            )
        ),
        MEASURE,
        Want("Progressing", 10, fields={"successful": 1}),
    ),
    (
        "argo-rollouts#1466: the only threshold has no data: no data, never a success",
        spec(analysis=ONLY_TOOLS),
        status(),
        obs(window=canary(tool_calls=0, tool_failures=0)),
        MEASURE,
        Want(
            "Progressing",
            10,
            events=("AnalysisNoData",),
            fields={"successful": 0, "no_data": 1, "last_result": "no_data"},
        ),
    ),
    (
        "argo-rollouts#4479: every turn errored fails even without maxTurnErrorRate",
        spec(analysis={"maxTurnErrorRate": None}),
        status(),
        obs(window=canary(turn_errors=40)),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    (
        "argo-rollouts#4479: unreadable metrics are an error, never a success",
        spec(),
        status(**SUCCEEDED),
        obs(window=MetricsUnreadable("redis: connection refused")),
        AFTER_PAUSE,
        Want(
            "Progressing",
            10,
            events=("AnalysisError",),
            fields={"successful": 1, "consecutive_errors": 1, "last_result": "error"},
        ),
    ),
    (
        "argo-rollouts#4479: errors up to consecutiveErrorLimit are tolerated",
        spec(),
        status(consecutive_errors=2),
        obs(window=MetricsUnreadable("timeout")),
        MEASURE,
        Want("Progressing", 10, events=("AnalysisError",), fields={"consecutive_errors": 3}),
    ),
    (
        "argo-rollouts#4479: one error more than consecutiveErrorLimit rolls back",
        spec(),
        status(consecutive_errors=3),
        obs(window=MetricsUnreadable("timeout")),
        MEASURE,
        Want("RolledBack", 0, "rollback", ("AnalysisError", "CanaryRolledBack")),
    ),
    (
        "a readable measurement resets the consecutive errors",
        spec(),
        status(consecutive_errors=3),
        obs(),
        MEASURE,
        Want("Progressing", 10, fields={"consecutive_errors": 0}),
    ),
    (
        "argo-rollouts#3850: inconclusive at the last step after its pause never promotes",
        spec(),
        status(step=1, weight=50, successful=2, step_successful=1, last_result="successful"),
        obs(window=Windows(canary=served(), stable=RevisionWindow())),
        AFTER_PAUSE,
        Want("Progressing", 50, events=("AnalysisInconclusive",), fields={"inconclusive": 1}),
    ),
    (
        "argo-rollouts#3850: more inconclusive measurements than inconclusiveLimit pause",
        spec(),
        status(step=1, weight=50, inconclusive=1, last_result="inconclusive"),
        obs(window=Windows(canary=served(), stable=RevisionWindow())),
        AFTER_PAUSE,
        Want("Paused", 50, events=("CanaryPaused",), fields={"pause_reason": "inconclusive"}),
    ),
    (
        "an inconclusive pause does not carry on by itself on success",
        spec(),
        status(phase="Paused", pause_reason="inconclusive", inconclusive=2, last_result="inconclusive"),
        obs(),
        AFTER_PAUSE,
        Want("Paused", 10, fields={"step_successful": 1}),
    ),
    (
        "a failing measurement while Paused still rolls back",
        spec(),
        status(phase="Paused", pause_reason="inconclusive", inconclusive=2),
        obs(window=canary(turn_errors=20)),
        AFTER_PAUSE,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    # --- steps -------------------------------------------------------------------------------------
    (
        "pause over, a successful measurement now: next step",
        spec(),
        status(**SUCCEEDED),
        obs(),
        AFTER_PAUSE,
        Want(
            "Progressing",
            50,
            "set_weight",
            ("CanaryStep",),
            consume=True,
            canary_replicas=5,
            fields={"step": 1, "step_started_at": AFTER_PAUSE, "step_successful": 0, "last_result": None},
        ),
    ),
    (
        "pause over and the step's last measurement was successful: next step between measurements",
        spec(),
        status(**SUCCEEDED, last_measured_at=T0 + 45),
        obs(),
        AFTER_PAUSE,
        Want("Progressing", 50, "set_weight", ("CanaryStep",), consume=False),
    ),
    (
        "last step passed: promoted",
        spec(),
        status(step=1, weight=50, **SUCCEEDED),
        obs(),
        AFTER_PAUSE,
        Want("Promoting", 100, "promote", ("CanaryPromoted",), canary_replicas=5),
    ),
    (
        "flagger#189: the last step is 30%, not 100%, and still promotes",
        spec(steps=[{"weight": 30, "pauseSeconds": 60}]),
        status(weight=30, **SUCCEEDED),
        obs(),
        AFTER_PAUSE,
        Want("Promoting", 100, "promote", ("CanaryPromoted",), canary_replicas=3),
    ),
    (
        "no data never promotes: the pause ends without a success, Paused",
        spec(),
        status(step=1, weight=50),
        obs(window=canary(turns=3, turn_errors=0)),
        AFTER_PAUSE,
        Want("Paused", 50, events=("AnalysisNoData", "CanaryPaused"), fields={"pause_reason": "no_data"}),
    ),
    (
        "no-data pause: still no data, no new Events",
        spec(),
        status(phase="Paused", pause_reason="no_data", step=1, weight=50, no_data=3, last_result="no_data"),
        obs(window=canary(turns=3, turn_errors=0)),
        T0 + 300,
        Want("Paused", 50, fields={"no_data": 4}),
    ),
    (
        "no-data pause carries on by itself at the first successful measurement",
        spec(),
        status(phase="Paused", pause_reason="no_data", no_data=3, last_result="no_data"),
        obs(),
        T0 + 300,
        Want("Progressing", 50, "set_weight", ("CanaryStep",), fields={"pause_reason": None, "step": 1}),
    ),
    (
        "pause over, the step had a success but its last measurement had no data: wait",
        spec(),
        status(successful=1, step_successful=1, last_result="no_data", no_data=1),
        obs(window=canary(turns=2, turn_errors=0)),
        AFTER_PAUSE,
        Want("Progressing", 10, fields={"no_data": 2}),
    ),
    (
        "a step without pauseSeconds waits for a human even after successes",
        spec(steps=MANUAL_LAST),
        status(phase="Paused", pause_reason="manual", step=1, weight=50, **SUCCEEDED),
        obs(),
        T0 + 3600,
        Want("Paused", 50, fields={"successful": 2}),
    ),
    (
        "a step without pauseSeconds still rolls back on a failed measurement",
        spec(steps=MANUAL_LAST),
        status(phase="Paused", pause_reason="manual", step=1, weight=50),
        obs(window=canary(turn_errors=20)),
        T0 + 3600,
        Want("RolledBack", 0, "rollback", ("AnalysisFailed", "CanaryRolledBack")),
    ),
    # --- commands ----------------------------------------------------------------------------------
    (
        "promote command promotes fully now",
        spec(),
        status(),
        obs(command="promote", window=canary(turns=0)),
        T0 + 5,
        Want("Promoting", 100, "promote", ("CanaryPromoted",)),
    ),
    (
        "abort command rolls back now",
        spec(),
        status(**SUCCEEDED),
        obs(command="abort"),
        T0 + 5,
        Want("RolledBack", 0, "rollback", ("CanaryRolledBack",), fields={"failed_revision": CANARY}),
    ),
    (
        "resume command moves a manual step on",
        spec(steps=MANUAL_FIRST),
        status(phase="Paused", pause_reason="manual"),
        obs(command="resume"),
        T0 + 5,
        Want("Progressing", 50, "set_weight", ("CanaryResumed", "CanaryStep"), fields={"step": 1}),
    ),
    (
        "resume command on an inconclusive pause at the last step promotes",
        spec(),
        status(phase="Paused", pause_reason="inconclusive", step=1, weight=50, inconclusive=2),
        obs(command="resume"),
        T0 + 5,
        Want("Promoting", 100, "promote", ("CanaryResumed", "CanaryPromoted"), fields={"inconclusive": 0}),
    ),
    (
        "resume command on a no-data pause moves on",
        spec(),
        status(phase="Paused", pause_reason="no_data"),
        obs(command="resume"),
        T0 + 5,
        Want("Progressing", 50, "set_weight", ("CanaryResumed", "CanaryStep")),
    ),
    (
        "resume command while Progressing is ignored, said in an Event",
        spec(),
        status(),
        obs(command="resume"),
        T0 + 5,
        Want("Progressing", 10, events=("RolloutCommandIgnored",)),
    ),
    (
        "promote command without a canary is ignored",
        spec(),
        STEADY,
        obs(desired_revision=STABLE, command="promote"),
        T0,
        Want("Stable", 0, events=("RolloutCommandIgnored",)),
    ),
    (
        "abort command while promoting is ignored",
        spec(),
        PROMOTING,
        obs(command="abort"),
        T0,
        Want("Promoting", 100, events=("RolloutCommandIgnored",)),
    ),
    (
        "promote command while evaluating skips the eval",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(command="promote", eval=EvalRunning()),
        T0 + 5,
        Want("Promoting", 100, "promote", ("CanaryPromoted",)),
    ),
    # --- promotion ---------------------------------------------------------------------------------
    (
        "promoting until the stable Deployment has rolled",
        spec(),
        PROMOTING,
        obs(stable_revision=CANARY, stable_rolled_out=False),
        T0,
        Want("Promoting", 100, canary_replicas=5),
    ),
    (
        "stable rolled out with the old revision still: not finished",
        spec(),
        PROMOTING,
        obs(stable_revision=STABLE, stable_rolled_out=True),
        T0,
        Want("Promoting", 100),
    ),
    (
        "stable runs the promoted revision everywhere: Stable, canary gone",
        spec(),
        PROMOTING,
        obs(stable_revision=CANARY, stable_rolled_out=True),
        T0,
        Want(
            "Stable",
            0,
            "finish_promotion",
            ("PromotionFinished",),
            canary_replicas=0,
            fields={"stable_revision": CANARY, "canary_revision": ""},
        ),
    ),
    (
        "a newer spec during Promoting waits for the promotion to finish",
        spec(),
        PROMOTING,
        obs(desired_revision=NEWER),
        T0,
        Want("Promoting", 100, fields={"canary_revision": CANARY}),
    ),
    # --- a newer spec mid-canary -------------------------------------------------------------------
    (
        "a newer spec replaces the canary from step 0",
        spec(),
        status(step=1, weight=50, successful=3, failed=0),
        obs(desired_revision=NEWER),
        T0 + 5,
        Want(
            "Progressing",
            0,
            "start_canary",
            ("CanaryReplaced",),
            consume=True,
            fields={"canary_revision": NEWER, "step": 0, "successful": 0, "stable_revision": STABLE},
        ),
    ),
    (
        "a newer spec replaces a canary that was evaluating",
        spec(eval=EVAL),
        EVALUATING.model_copy(update={"eval_started_at": T0}),
        obs(desired_revision=NEWER, eval=EvalRunning()),
        T0 + 5,
        Want("Evaluating", 0, "start_canary", ("CanaryReplaced",), fields={"eval_started_at": None}),
    ),
    (
        "the spec reverted to the stable revision: the canary is dropped",
        spec(),
        status(),
        obs(desired_revision=STABLE),
        T0 + 5,
        Want(
            "Stable", 0, "rollback", ("CanaryDropped",), fields={"failed_revision": "", "canary_revision": ""}
        ),
    ),
]


def _reasons(decision: RolloutDecision) -> tuple[str, ...]:
    return tuple(e.reason for e in decision.events)


@pytest.mark.parametrize(
    ("case", "rollout", "before", "seen", "now", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_decision_table(
    case: str, rollout: RolloutSpec, before: RolloutStatus, seen: Observation, now: float, want: Want
) -> None:
    d = decide(rollout, before, seen, now)
    got = (d.status.phase, d.weight, d.action, _reasons(d))
    assert got == (want.phase, want.weight, want.action, want.events), d.status.message
    if want.consume is not None:
        assert d.consume_window is want.consume
    if want.canary_replicas is not None:
        assert d.canary_replicas == want.canary_replicas
    for name, value in want.fields.items():
        assert getattr(d.status, name) == value, name
    assert all(e.message for e in d.events)


# --- the measurement on its own ----------------------------------------------------------------------

P95_CASES: list[tuple[str, tuple[tuple[float, int], ...], float | None]] = [
    ("95th sample in the 200 ms bucket", ((100.0, 50), (200.0, 95), (500.0, 100), (INF, 100)), 200.0),
    ("one sample short of it: next bucket", ((100.0, 50), (200.0, 94), (500.0, 100), (INF, 100)), 500.0),
    ("unsorted buckets", ((INF, 100), (500.0, 100), (100.0, 50), (200.0, 95)), 200.0),
    ("no buckets: no data", (), None),
    ("no samples: no data", ((100.0, 0), (INF, 0)), None),
    ("slowest samples beyond the last finite bound", ((100.0, 1), (1000.0, 2), (INF, 40)), INF),
    ("a NaN bound is ignored", ((math.nan, 7), (100.0, 10), (INF, 10)), 100.0),
    ("a negative count (counter reset) counts as none", ((100.0, -5), (INF, -5)), None),
]


@pytest.mark.parametrize(("case", "buckets", "want"), P95_CASES, ids=[c[0] for c in P95_CASES])
def test_p95_is_the_upper_bound_of_its_bucket(
    case: str, buckets: tuple[tuple[float, int], ...], want: float | None
) -> None:
    assert p95_ms(buckets) == want


ALL_THRESHOLDS = spec().analysis
NO_THRESHOLDS = spec(analysis=dict.fromkeys(THRESHOLDS)).analysis
MEASURE_CASES: list[tuple[str, AnalysisSpec, Windows | MetricsUnreadable, str, str]] = [
    ("healthy", ALL_THRESHOLDS, GOOD, "successful", ""),
    ("unreadable", ALL_THRESHOLDS, MetricsUnreadable("pod desk-a: timeout"), "error", "desk-a: timeout"),
    ("fewer turns than minTurns", ALL_THRESHOLDS, canary(turns=9, turn_errors=0), "no_data", "minTurns 10"),
    (
        "negative deltas after a counter reset",
        ALL_THRESHOLDS,
        canary(turns=-40, turn_errors=-3),
        "no_data",
        "",
    ),
    ("rate exactly at its threshold passes", ALL_THRESHOLDS, canary(turn_errors=4), "successful", ""),
    (
        "rate just above its threshold fails",
        ALL_THRESHOLDS,
        canary(turn_errors=5),
        "failed",
        "turn error rate",
    ),
    ("no thresholds: served turns succeed", NO_THRESHOLDS, canary(turn_errors=39), "successful", ""),
    ("no thresholds: all turns errored fails", NO_THRESHOLDS, canary(turn_errors=40), "failed", "every one"),
    (
        "more errors than turns (inconsistent deltas) fails",
        NO_THRESHOLDS,
        canary(turn_errors=41),
        "failed",
        "every one",
    ),
    (
        "stable below minTurns: the p95 comparison is inconclusive",
        ALL_THRESHOLDS,
        Windows(canary=served(), stable=served(turns=9)),
        "inconclusive",
        "stable revision has no latency data",
    ),
    (
        "stable p95 beyond its last finite bucket: inconclusive",
        ALL_THRESHOLDS,
        Windows(canary=served(), stable=served(response_ms_buckets=((100.0, 1), (INF, 40)))),
        "inconclusive",
        "stable revision",
    ),
    (
        "a failure outweighs an inconclusive comparison",
        ALL_THRESHOLDS,
        Windows(canary=served(tool_failures=5), stable=RevisionWindow()),
        "failed",
        "tool failure rate",
    ),
    (
        "stable p95 of 0 ms: compared without dividing by it",
        spec(analysis={"maxResponseP95Ms": None}).analysis,
        Windows(canary=served(), stable=served(response_ms_buckets=((0.0, 40), (INF, 40)))),
        "failed",
        "x stable 0 ms",
    ),
    (
        "canary without latency samples: the comparison has no data, the rest judges",
        ALL_THRESHOLDS,
        Windows(canary=served(response_ms_buckets=()), stable=RevisionWindow()),
        "successful",
        "",
    ),
]


@pytest.mark.parametrize(
    ("case", "analysis", "window", "result", "reason"), MEASURE_CASES, ids=[c[0] for c in MEASURE_CASES]
)
def test_measurement_classifies_the_window(
    case: str, analysis: AnalysisSpec, window: Windows | MetricsUnreadable, result: str, reason: str
) -> None:
    m = measure(analysis, window)
    assert m.result == result, m.reasons
    assert reason in "; ".join(m.reasons)
    assert bool(m.reasons) == (result != "successful")


# --- sequences: the operator's checks one after another ---------------------------------------------


class Operator:
    """Runs decide as the operator would: every check reads the status back from what was persisted
    (as after a restart) and plays the cluster's part (the promoted stable Deployment rolls out)."""

    def __init__(self, rollout: RolloutSpec, desired: str = CANARY) -> None:
        self.spec = rollout
        self.status = RolloutStatus(stable_revision=STABLE)
        self.desired = desired
        self.stable = STABLE
        self.now = T0
        self.decisions: list[RolloutDecision] = []

    def check(self, seconds: float = 10.0, **seen: Any) -> RolloutDecision:
        self.now += seconds
        promoted = self.status.phase == "Promoting"
        if promoted:
            self.stable = self.status.canary_revision
        seen = {"desired_revision": self.desired, "stable_revision": self.stable, **seen}
        d = decide(self.spec, self.status, obs(stable_rolled_out=promoted, **seen), self.now)
        self.status = RolloutStatus.model_validate(d.status.dump())
        self.decisions.append(d)
        return d

    def run(self, seconds: float, **seen: Any) -> None:
        end = self.now + seconds
        while self.now < end:
            self.check(**seen)

    def weights(self) -> list[int]:
        """The weights placement was given, without repeats."""
        out: list[int] = []
        for d in self.decisions:
            if not out or out[-1] != d.weight:
                out.append(d.weight)
        return out

    def actions(self) -> list[str]:
        return [d.action for d in self.decisions if d.action != "none"]

    def reasons(self) -> list[str]:
        return [e.reason for d in self.decisions for e in d.events]


def test_a_good_canary_walks_10_then_50_then_is_promoted() -> None:
    op = Operator(spec())
    op.run(300)
    assert op.status.phase == "Stable"
    assert op.status.stable_revision == CANARY
    assert op.weights() == [0, 10, 50, 100, 0]
    assert op.actions() == ["start_canary", "set_weight", "set_weight", "promote", "finish_promotion"]
    assert op.reasons() == [
        "CanaryStarted",
        "CanaryStep",
        "CanaryStep",
        "CanaryPromoted",
        "PromotionFinished",
    ]
    first_weight = next(d for d in op.decisions if d.weight == 10).status.step_started_at
    promoted = next(d for d in op.decisions if d.action == "promote")
    assert first_weight is not None and promoted.status.step_started_at is not None
    assert promoted.status.step_started_at - first_weight >= 60  # each step held its pause
    assert op.status.successful >= 4 and op.status.failed == 0


def test_a_bad_canary_rolls_back_at_its_first_failing_measurement_and_is_not_retried() -> None:
    op = Operator(spec())
    op.run(120, window=canary(turn_errors=12))
    assert op.weights() == [0, 10, 0]
    assert op.reasons() == ["CanaryStarted", "CanaryStep", "AnalysisFailed", "CanaryRolledBack"]
    weight_set = next(d for d in op.decisions if d.action == "set_weight").status.step_started_at
    rollback = next(d for d in op.decisions if d.action == "rollback").status.last_measured_at
    assert weight_set is not None and rollback == weight_set + 30  # the first measurement
    assert (op.status.phase, op.status.failed_revision) == ("RolledBack", CANARY)
    assert op.actions()[-1] == "rollback"  # nothing after it while the spec stays the same

    op.desired = NEWER
    assert op.check().action == "start_canary"
    assert op.status.canary_revision == NEWER and op.status.failed_revision == ""


def test_missing_metrics_pause_once_and_the_canary_goes_on_when_data_arrives() -> None:
    op = Operator(spec())
    op.run(300, window=canary(turns=2, turn_errors=0))
    assert (op.status.phase, op.status.pause_reason, op.status.weight) == ("Paused", "no_data", 10)
    assert op.reasons().count("AnalysisNoData") == 1
    assert op.reasons().count("CanaryPaused") == 1
    assert op.status.successful == 0

    op.run(30)
    assert op.status.step == 1 and op.status.weight == 50 and op.status.phase == "Progressing"
    op.run(300)
    assert (op.status.phase, op.status.stable_revision) == ("Stable", CANARY)


def test_metrics_that_cannot_be_read_roll_back_after_the_error_limit() -> None:
    op = Operator(spec())
    op.run(300, window=MetricsUnreadable("redis: connection refused"))
    assert op.reasons().count("AnalysisError") == 4  # consecutiveErrorLimit 3, the fourth rolls back
    assert op.status.phase == "RolledBack" and op.status.successful == 0


def test_manual_steps_resume_and_abort() -> None:
    op = Operator(spec(steps=[{"weight": 10}, {"weight": 30}, {"weight": 60, "pauseSeconds": 60}]))
    op.run(600)
    assert (op.status.phase, op.status.pause_reason, op.status.weight) == ("Paused", "manual", 10)

    assert op.check(command="resume").weight == 30
    op.run(600)
    assert (op.status.phase, op.status.weight) == ("Paused", 30)

    d = op.check(command="abort")
    assert (d.status.phase, d.weight, d.action) == ("RolledBack", 0, "rollback")
    assert op.check(command="resume").events[0].reason == "RolloutCommandIgnored"


def test_manual_promote_skips_the_remaining_steps() -> None:
    op = Operator(spec(steps=[{"weight": 10}, {"weight": 30}, {"weight": 60}]))
    op.run(60)
    assert op.check(command="promote").action == "promote"
    op.run(20)
    assert (op.status.phase, op.status.stable_revision) == ("Stable", CANARY)
    assert op.weights() == [0, 10, 100, 0]


def test_inconclusive_analysis_pauses_and_only_a_human_moves_it_on() -> None:
    op = Operator(spec())
    op.run(600, window=Windows(canary=served(), stable=RevisionWindow()))
    assert (op.status.phase, op.status.pause_reason, op.status.weight) == ("Paused", "inconclusive", 10)
    assert "promote" not in op.actions()
    assert op.check(command="resume").weight == 50
    assert op.status.inconclusive == 0


def test_a_newer_spec_mid_canary_starts_over_from_step_0() -> None:
    op = Operator(spec())
    op.run(100)
    assert op.status.weight == 50
    op.desired = NEWER
    d = op.check()
    assert (d.action, d.weight, d.status.canary_revision) == ("start_canary", 0, NEWER)
    assert d.consume_window
    op.run(300)
    assert (op.status.phase, op.status.stable_revision) == ("Stable", NEWER)
    assert op.weights() == [0, 10, 50, 0, 10, 50, 100, 0]


def test_the_eval_gate_runs_before_the_first_step() -> None:
    op = Operator(spec(eval=EVAL))
    assert op.check(canary_ready=False).status.phase == "Evaluating"
    assert op.check().action == "start_eval"
    op.run(100, eval=EvalRunning())
    assert (op.status.phase, op.status.weight) == ("Evaluating", 0)
    d = op.check(eval=EvalFinished(passed=10, total=10))
    assert (d.status.phase, d.weight, d.status.eval_pass_rate) == ("Progressing", 10, 1.0)
    assert d.consume_window  # eval traffic is not judged as callers'


def test_rolling_strategy_never_makes_a_canary() -> None:
    op = Operator(spec(strategy="rolling"))
    op.run(100, window=canary(turn_errors=40))
    assert op.actions() == []
    assert op.weights() == [0]
    assert (op.status.phase, op.status.stable_revision) == ("Stable", CANARY)


# --- properties for any input ------------------------------------------------------------------------

REVISIONS = st.sampled_from(["", "a", "b", "c"])
COUNTS = st.integers(min_value=-10, max_value=10**20)
TIMES = st.floats(allow_nan=True, allow_infinity=True)
RATES = st.none() | st.floats(min_value=0, max_value=1)


@st.composite
def rollout_specs(draw: st.DrawFn) -> RolloutSpec:
    weights = sorted(draw(st.sets(st.integers(min_value=1, max_value=100), min_size=1, max_size=5)))
    pauses = st.none() | st.integers(min_value=0, max_value=600)
    steps = [{"weight": w, "pauseSeconds": draw(pauses)} for w in weights]
    analysis = {
        "intervalSeconds": draw(st.integers(min_value=1, max_value=120)),
        "minTurns": draw(st.integers(min_value=1, max_value=50)),
        "failureLimit": draw(st.integers(min_value=0, max_value=3)),
        "inconclusiveLimit": draw(st.integers(min_value=0, max_value=3)),
        "consecutiveErrorLimit": draw(st.integers(min_value=0, max_value=3)),
        "maxTurnErrorRate": draw(RATES),
        "maxToolFailureRate": draw(RATES),
        "maxDivergenceFlagRate": draw(RATES),
        "maxInterruptionRate": draw(RATES),
        "maxResponseP95Ms": draw(st.none() | st.floats(min_value=1, max_value=600_000)),
        "maxP95IncreaseOverStable": draw(st.none() | st.floats(min_value=1, max_value=100)),
    }
    strategy = draw(st.sampled_from(["rolling", "canary"]))
    gate = {"suites": ["smoke"], "minPassRate": draw(st.floats(min_value=0, max_value=1))}
    eval_gate = gate if strategy == "canary" and draw(st.booleans()) else None
    return RolloutSpec.model_validate(
        {"strategy": strategy, "steps": steps, "analysis": analysis, "eval": eval_gate}
    )


statuses = st.builds(
    RolloutStatus,
    phase=st.sampled_from(["Stable", "Evaluating", "Progressing", "Paused", "Promoting", "RolledBack"]),
    stable_revision=REVISIONS,
    canary_revision=REVISIONS,
    failed_revision=REVISIONS,
    step=st.integers(min_value=-3, max_value=25),
    weight=st.integers(min_value=-5, max_value=150),
    step_started_at=st.none() | TIMES,
    last_measured_at=st.none() | TIMES,
    eval_started_at=st.none() | TIMES,
    successful=COUNTS,
    failed=COUNTS,
    inconclusive=COUNTS,
    no_data=COUNTS,
    consecutive_errors=COUNTS,
    step_successful=COUNTS,
    last_result=st.none() | st.sampled_from(["successful", "failed", "inconclusive", "no_data", "error"]),
    pause_reason=st.none() | st.sampled_from(["manual", "inconclusive", "no_data"]),
)
BUCKETS = st.lists(st.tuples(TIMES, COUNTS), max_size=6).map(tuple)
revision_windows = st.builds(
    RevisionWindow,
    sessions=COUNTS,
    turns=COUNTS,
    turn_errors=COUNTS,
    tool_calls=COUNTS,
    tool_failures=COUNTS,
    audited_turns=COUNTS,
    divergence_flags=COUNTS,
    interruptions=COUNTS,
    response_ms_buckets=BUCKETS,
)
observations = st.builds(
    Observation,
    desired_revision=REVISIONS,
    stable_revision=REVISIONS,
    canary_ready=st.booleans(),
    window=st.builds(Windows, revision_windows, revision_windows) | st.builds(MetricsUnreadable, st.text()),
    eval=st.none()
    | st.just(EvalRunning())
    | st.builds(EvalFinished, COUNTS, COUNTS)
    | st.builds(EvalError, st.text(max_size=20)),
    command=st.none() | st.sampled_from(["promote", "abort", "resume"]),
    stable_rolled_out=st.booleans(),
    replicas=st.integers(min_value=-5, max_value=10**6),
)


@settings(max_examples=600, deadline=None)
@given(rollout_specs(), statuses, observations, TIMES)
def test_decide_never_raises_and_keeps_its_promises(
    rollout: RolloutSpec, before: RolloutStatus, seen: Observation, now: float
) -> None:
    d = decide(rollout, before, seen, now)
    after = d.status
    assert 0 <= d.weight <= 100
    assert d.canary_replicas >= 0
    assert (d.canary_replicas == 0) == (after.canary_revision == "")
    if after.phase in {"Stable", "RolledBack", "Evaluating"}:
        assert d.weight == 0
    if after.phase != before.phase:
        assert d.events, "a phase change is always told"
    if seen.command is not None:
        assert d.events, "a command is obeyed or said to be ignored"
    if d.action == "rollback":
        assert d.weight == 0 and after.canary_revision == ""
    if not seen.desired_revision:
        return
    if rollout.strategy == "rolling":
        assert after.phase == "Stable" and after.stable_revision == seen.desired_revision
    if d.action == "promote" and seen.command is None:
        # no data, an inconclusive or failed measurement, an error or an eval never promote
        assert before.phase in {"Progressing", "Paused"}
        assert before.pause_reason not in {"manual", "inconclusive"}
        assert after.last_result == "successful" and after.step_successful > 0
    if d.action == "start_canary":
        assert after.canary_revision == seen.desired_revision != after.stable_revision
        assert seen.desired_revision != before.failed_revision or before.phase in ACTIVE_PHASES


ACTIVE_PHASES = {"Evaluating", "Progressing", "Paused"}
