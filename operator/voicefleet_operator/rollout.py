"""Canary rollouts of a new revision, as one pure decision (docs/rollouts.md is the user's guide).

A revision is the hash of the rendered pod configuration. With ``spec.rollout.strategy: canary`` a
new revision runs beside the stable one and takes a growing share of NEW sessions (placement reads
the weight from Redis); ``decide`` takes the spec, the persisted ``RolloutStatus``, what the
operator observed and the time, and says what happens next. It does no I/O and never raises.

Phases: Stable -> (Evaluating) -> Progressing <-> Paused -> Promoting -> Stable, or -> RolledBack.

- No canary: strategy ``rolling``, or no stable revision yet (the first deploy is stable at once).
  A canary still in the status when the strategy turns ``rolling`` is dropped (``finish_promotion``:
  the canary goes, the stable Deployment rolls as before).
- A desired revision other than the stable one starts a canary (``start_canary``), unless it is the
  ``failedRevision``: a rolled-back revision stays RolledBack until the spec changes again.
- Evaluating (with ``rollout.eval``), weight 0: once the canary pods are ready the eval Job starts
  (``start_eval``); a pass rate >= minPassRate goes on to the first step; a lower one, an eval
  error, an eval with no cases or one running past timeoutSeconds rolls back (EvalFailed).
- Progressing: each step's weight is set once the canary pods are ready (``set_weight``); a step
  without pauseSeconds is Paused at once and waits for ``resume`` or ``promote``.
- A measurement every intervalSeconds classifies what the canary served since the last one (see
  ``measure``): successful | failed | inconclusive | no_data | error. ``consume_window`` tells the
  operator to reset its counter baselines (after a measurement, and when a canary or its first
  step starts, so eval traffic is never judged as caller traffic).
  failed > failureLimit rolls back; consecutive errors > consecutiveErrorLimit roll back (an error
  never counts as a success); inconclusive > inconclusiveLimit pauses for a human.
- A step advances only when its pause has elapsed AND it has a successful measurement AND its last
  measurement was successful. No data never promotes: a pause that elapses without a successful
  measurement turns Paused (no_data), which carries on by itself at the next successful measurement.
  Measurements go on while Paused, so a failing canary is rolled back even then.
- After the last step passes the canary is promoted, whatever its weight (``promote``: the stable
  Deployment takes the canary's pod template, weight 100 while it rolls); Promoting ends when the
  stable Deployment runs the revision on all pods (``finish_promotion``: stable = canary, weight 0,
  the canary goes).
- Commands (the ``voicefleet.io/rollout-command`` annotation): ``promote`` promotes fully now,
  ``abort`` rolls back now, ``resume`` moves a Paused rollout past its current step (the last step
  promotes) and resets the inconclusive count. A command is handled in the call that sees it:
  obeyed, or ignored with an Event when it does not apply (the operator clears it either way).
- A newer desired revision during a canary replaces it (step 0 again); one equal to the stable
  revision just drops it. During Promoting it waits until the promotion has finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .events import Event
from .spec import AnalysisSpec, MeasurementResult, RolloutSpec, RolloutStatus

Action = Literal[
    "none", "start_canary", "start_eval", "set_weight", "promote", "finish_promotion", "rollback"
]
Command = Literal["promote", "abort", "resume"]

ACTIVE = frozenset({"Evaluating", "Progressing", "Paused"})
_MAX_COUNT = 2**53  # counters are clamped here: a float holds them exactly, rates never overflow


@dataclass(frozen=True)
class RevisionWindow:
    """What one revision served since the last measurement (deltas of its counters).

    ``response_ms_buckets``: end of caller turn -> first agent audio, as Prometheus buckets:
    (upper bound in ms, cumulative count of samples <= bound), ``math.inf`` for the last one."""

    sessions: int = 0
    turns: int = 0
    turn_errors: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    audited_turns: int = 0
    divergence_flags: int = 0
    interruptions: int = 0
    response_ms_buckets: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Windows:
    canary: RevisionWindow = field(default_factory=RevisionWindow)
    stable: RevisionWindow = field(default_factory=RevisionWindow)


@dataclass(frozen=True)
class MetricsUnreadable:
    """The counters could not be read (Redis or the pods did not answer)."""

    error: str


@dataclass(frozen=True)
class EvalRunning:
    pass


@dataclass(frozen=True)
class EvalFinished:
    passed: int
    total: int


@dataclass(frozen=True)
class EvalError:
    message: str


EvalOutcome = EvalRunning | EvalFinished | EvalError


@dataclass(frozen=True)
class Observation:
    """What the operator saw for one VoiceAgent.

    ``stable_revision``: what the stable Deployment runs ("" when nothing runs yet; the persisted
    status.stableRevision stands in while the Deployment is not seen). ``eval``: the eval Job of the
    canary revision (None: none seen). ``stable_rolled_out``: the stable Deployment runs
    ``stable_revision`` on all its pods. ``replicas``: pods of the stable Deployment."""

    desired_revision: str
    stable_revision: str = ""
    canary_ready: bool = False
    window: Windows | MetricsUnreadable = field(default_factory=Windows)
    eval: EvalOutcome | None = None
    command: Command | None = None
    stable_rolled_out: bool = False
    replicas: int = 1


@dataclass(frozen=True)
class Measurement:
    result: MeasurementResult
    reasons: tuple[str, ...]  # what failed, could not be compared, or had no data
    summary: str


@dataclass(frozen=True)
class RolloutDecision:
    """``weight``: share of new sessions the canary revision gets (the operator writes it to Redis).
    ``canary_replicas``: pods the canary Deployment should have (0: no canary Deployment).
    ``action``: what changed in this call, for the one-shot parts."""

    status: RolloutStatus
    action: Action = "none"
    canary_replicas: int = 0
    consume_window: bool = False
    events: tuple[Event, ...] = ()

    @property
    def weight(self) -> int:
        return self.status.weight


@dataclass(frozen=True)
class _Outcome:
    status: RolloutStatus
    action: Action = "none"
    events: tuple[Event, ...] = ()
    consume_window: bool = False
    obeyed: bool = False  # the observed command was carried out


# --- measurement -------------------------------------------------------------------------------------


def _count(n: int) -> int:
    """A counter delta made safe: a counter reset shows as a negative delta, garbage as a huge one."""
    return min(max(n, 0), _MAX_COUNT)


def p95_ms(buckets: tuple[tuple[float, int], ...]) -> float | None:
    """Upper bound of the bucket that holds the 95th percentile (an upper-bound estimate, as
    Prometheus' histogram_quantile without interpolation); None without samples."""
    cumulative: list[tuple[float, int]] = []
    total = 0
    for bound, count in sorted((b, _count(c)) for b, c in buckets if not math.isnan(b)):
        total = max(total, count)  # a cumulative series never decreases; a glitch must not make it
        cumulative.append((bound, total))
    if total == 0:
        return None
    return next(bound for bound, count in cumulative if count * 100 >= total * 95)


def measure(analysis: AnalysisSpec, window: Windows | MetricsUnreadable) -> Measurement:
    """Classifies one window. A metric with a zero denominator has no data: it neither fails nor
    succeeds. Canary turns < minTurns: no_data. Any threshold exceeded, or every turn errored: failed.
    A comparison with a stable revision that has no data: inconclusive (unless something failed).
    Thresholds configured but none with data: no_data. Unreadable counters: error."""
    if isinstance(window, MetricsUnreadable):
        return Measurement("error", (f"metrics unreadable: {window.error}",), "no counters")
    c, s = window.canary, window.stable
    turns, errors = _count(c.turns), _count(c.turn_errors)
    canary_p95 = p95_ms(c.response_ms_buckets)
    summary = f"{_count(c.sessions)} sessions, {turns} turns, {errors} errored" + (
        f", p95 <= {canary_p95:g} ms" if canary_p95 is not None else ""
    )
    if turns < analysis.min_turns:
        return Measurement(
            "no_data", (f"{turns} canary turns, fewer than minTurns {analysis.min_turns}",), summary
        )

    failures: list[str] = []
    unknown: list[str] = []
    configured = evaluated = 0
    if errors >= turns:
        failures.append(f"every one of {turns} canary turns errored")
    rates = (
        ("turn error rate", c.turn_errors, c.turns, analysis.max_turn_error_rate),
        ("tool failure rate", c.tool_failures, c.tool_calls, analysis.max_tool_failure_rate),
        ("divergence flag rate", c.divergence_flags, c.audited_turns, analysis.max_divergence_flag_rate),
        ("interruption rate", c.interruptions, c.turns, analysis.max_interruption_rate),
    )
    for name, num, den, limit in rates:
        if limit is None:
            continue
        configured += 1
        if _count(den) == 0:
            continue
        evaluated += 1
        rate = _count(num) / _count(den)
        if rate > limit:
            failures.append(f"{name} {_count(num)}/{_count(den)} = {rate:.3f} > {limit:g}")
    if analysis.max_response_p95_ms is not None:
        configured += 1
        if canary_p95 is not None:
            evaluated += 1
            if canary_p95 > analysis.max_response_p95_ms:
                failures.append(f"response p95 <= {canary_p95:g} ms > {analysis.max_response_p95_ms:g} ms")
    ratio = analysis.max_p95_increase_over_stable
    if ratio is not None:
        configured += 1
        enough_stable = _count(s.turns) >= analysis.min_turns
        stable_p95 = p95_ms(s.response_ms_buckets) if enough_stable else None
        if canary_p95 is None:
            pass  # the canary has no latency data: nothing to compare
        elif stable_p95 is None or math.isinf(stable_p95):
            unknown.append("the stable revision has no latency data to compare the canary's p95 with")
        else:
            evaluated += 1
            if canary_p95 > ratio * stable_p95:  # multiplied, never divided: a stable p95 may be 0
                failures.append(f"response p95 {canary_p95:g} ms > {ratio:g} x stable {stable_p95:g} ms")

    if failures:
        return Measurement("failed", tuple(failures), summary)
    if unknown:
        return Measurement("inconclusive", tuple(unknown), summary)
    if configured and not evaluated:
        return Measurement("no_data", ("none of the configured thresholds had data",), summary)
    return Measurement("successful", (), summary)


# --- the decision ------------------------------------------------------------------------------------


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> RolloutDecision:
    """The next step of the rollout; ``now`` in epoch seconds."""
    running = obs.stable_revision or status.stable_revision
    if not obs.desired_revision:
        out = _Outcome(status)  # the spec could not be rendered: change nothing
    elif spec.strategy == "rolling" or not running:
        out = _without_canary(spec, status, obs)
    elif status.phase == "Promoting" and status.canary_revision:
        out = _promoting(status, obs)
    elif status.phase in ACTIVE:
        out = _active(spec, status, obs, now)
    else:
        out = _idle(spec, status, obs, running)

    events = list(out.events)
    if obs.command is not None and not out.obeyed:
        events.append(
            Event(
                "RolloutCommandIgnored",
                f"{obs.command} ignored: nothing to {obs.command} in phase {status.phase}",
                warning=True,
            )
        )
    if out.status.phase != status.phase and not out.events:
        events.append(Event(f"Rollout{out.status.phase}", out.status.message))
    new = _update(out.status, weight=_weight(spec, out.status))
    return RolloutDecision(
        status=new,
        action=out.action,
        canary_replicas=_canary_replicas(spec, new, obs.replicas),
        consume_window=out.consume_window,
        events=tuple(events),
    )


def _canary_replicas(spec: RolloutSpec, status: RolloutStatus, replicas: int) -> int:
    """Pods of the canary: its step's share of the stable replicas, at least one while it exists."""
    if not status.canary_revision:
        return 0
    if status.phase == "Evaluating":
        return 1
    weight = spec.steps[_step_index(spec, status)].weight
    return max(1, -(-max(replicas, 0) * weight // 100))  # ceil, in integers


def _weight(spec: RolloutSpec, status: RolloutStatus) -> int:
    """The canary's share follows from phase and step, so the spec's current weights always rule."""
    if not status.canary_revision:
        return 0
    if status.phase == "Promoting":
        return 100  # the stable pods move to the promoted revision: new sessions go there at once
    if status.phase in {"Progressing", "Paused"} and status.step_started_at is not None:
        return spec.steps[_step_index(spec, status)].weight
    return 0  # evaluating, or waiting for the canary pods


def _step_index(spec: RolloutSpec, status: RolloutStatus) -> int:
    """The status' step within the spec's steps (the steps may have been edited since)."""
    return min(max(status.step, 0), len(spec.steps) - 1)


def _update(status: RolloutStatus, **changes: Any) -> RolloutStatus:
    return status.model_copy(update=changes)


def _without_canary(spec: RolloutSpec, st: RolloutStatus, obs: Observation) -> _Outcome:
    desired = obs.desired_revision
    why = "strategy rolling" if spec.strategy == "rolling" else "first revision, stable at once"
    new = _update(
        st,
        phase="Stable",
        stable_revision=desired,
        canary_revision="",
        step=0,
        step_started_at=None,
        pause_reason=None,
        eval_started_at=None,
        failed_revision="",
        message=f"{why}: every pod rolls to revision {desired}",
    )
    if st.canary_revision and st.phase in {*ACTIVE, "Promoting"}:
        message = f"strategy rolling: canary {st.canary_revision} dropped, every pod rolls to {desired}"
        return _Outcome(new, "finish_promotion", (Event("CanaryDropped", message),))
    return _Outcome(new)


def _idle(spec: RolloutSpec, st: RolloutStatus, obs: Observation, running: str) -> _Outcome:
    desired = obs.desired_revision
    at_rest = dict(canary_revision="", step=0, step_started_at=None, pause_reason=None)
    if desired == running:
        message = f"every pod runs revision {running}"
        return _Outcome(
            _update(
                st, phase="Stable", stable_revision=running, failed_revision="", message=message, **at_rest
            )
        )
    if desired == st.failed_revision:
        message = f"revision {desired} was rolled back; it is not tried again until the spec changes"
        return _Outcome(_update(st, phase="RolledBack", stable_revision=running, message=message, **at_rest))
    return _start(
        spec, running, desired, "CanaryStarted", f"canary {desired} started beside stable {running}"
    )


def _start(spec: RolloutSpec, stable: str, canary: str, reason: str, message: str) -> _Outcome:
    if spec.eval is not None:
        first = f"eval first ({', '.join([*spec.eval.suites, *spec.eval.packs])})"
    else:
        first = f"first step {spec.steps[0].weight}% once its pods are ready"
    new = RolloutStatus(
        phase="Evaluating" if spec.eval is not None else "Progressing",
        stable_revision=stable,
        canary_revision=canary,
        message=f"{message}: {first}",
    )
    return _Outcome(new, "start_canary", (Event(reason, new.message),), consume_window=True)


def _active(spec: RolloutSpec, st: RolloutStatus, obs: Observation, now: float) -> _Outcome:
    desired = obs.desired_revision
    if desired != st.canary_revision:
        if desired == st.stable_revision:
            message = f"spec is back at stable revision {desired}: canary {st.canary_revision} dropped"
            at_rest = dict(canary_revision="", step=0, step_started_at=None, pause_reason=None)
            new = _update(st, phase="Stable", message=message, **at_rest)
            return _Outcome(new, "rollback", (Event("CanaryDropped", message),))
        message = f"canary {desired} replaces canary {st.canary_revision} beside stable {st.stable_revision}"
        return _start(spec, st.stable_revision, desired, "CanaryReplaced", message)
    if obs.command == "abort":
        return _rollback(st, "aborted by command", obeyed=True)
    if obs.command == "promote":
        return _promote(st, "promoted by command", obeyed=True)
    if obs.command == "resume" and st.phase == "Paused":
        resumed = Event(
            "CanaryResumed",
            f"canary {st.canary_revision} resumed by command at step {_step_index(spec, st) + 1}",
        )
        out = _advance(spec, _update(st, inconclusive=0), now, (resumed,), False)
        return _Outcome(out.status, out.action, out.events, out.consume_window, obeyed=True)
    if st.phase == "Evaluating":
        return _evaluating(spec, st, obs, now)
    return _progressing(spec, st, obs, now)


def _evaluating(spec: RolloutSpec, st: RolloutStatus, obs: Observation, now: float) -> _Outcome:
    gate = spec.eval
    if gate is None:
        skipped = Event("EvalSkipped", f"rollout.eval was removed: canary {st.canary_revision} goes on")
        return _enter_first_step(spec, st, obs, now, (skipped,))
    outcome = obs.eval
    if isinstance(outcome, EvalFinished):
        total = _count(outcome.total)
        if total == 0:
            return _eval_failed(st, "the eval ran no cases")
        passed = min(_count(outcome.passed), total)
        rate = passed / total
        st = _update(st, eval_pass_rate=rate)
        verdict = f"{passed}/{total} eval cases passed ({rate:.0%}, minPassRate {gate.min_pass_rate:.0%})"
        if rate >= gate.min_pass_rate:
            return _enter_first_step(spec, st, obs, now, (Event("EvalPassed", verdict),))
        return _eval_failed(st, verdict)
    if isinstance(outcome, EvalError):
        return _eval_failed(st, f"the eval failed: {outcome.message}")
    started = st.eval_started_at
    if started is not None and now - started > gate.timeout_seconds:
        return _eval_failed(st, f"the eval did not finish within {gate.timeout_seconds}s")
    if outcome is None and started is None:
        if not obs.canary_ready:
            return _wait_for_pods(spec, st, now)
        message = f"eval of canary {st.canary_revision} started: {', '.join([*gate.suites, *gate.packs])}"
        st = _update(st, eval_started_at=now, waiting_since=None, message=message)
        return _Outcome(st, "start_eval", (Event("EvalStarted", message),))
    # A running eval this call did not start (an operator restart) is timed from when it is first seen.
    message = f"waiting for the eval of canary {st.canary_revision}"
    return _Outcome(_update(st, eval_started_at=now if started is None else started, message=message))


def _wait_for_pods(spec: RolloutSpec, st: RolloutStatus, now: float) -> _Outcome:
    """The canary's pods are not ready yet: wait, but not beyond readyTimeoutSeconds (pods that cannot
    start would otherwise hold the rollout forever at weight 0)."""
    since = st.waiting_since if st.waiting_since is not None and st.waiting_since <= now else now
    if now - since > spec.ready_timeout_seconds:
        why = f"the canary pods of {st.canary_revision} were not ready within {spec.ready_timeout_seconds}s"
        out = _rollback(st, why)
        return _Outcome(out.status, out.action, (Event("CanaryNotReady", why, warning=True), *out.events))
    message = f"waiting for the canary pods of {st.canary_revision}"
    return _Outcome(_update(st, waiting_since=since, message=message))


def _eval_failed(st: RolloutStatus, why: str) -> _Outcome:
    out = _rollback(st, why)
    return _Outcome(out.status, out.action, (Event("EvalFailed", why, warning=True), *out.events))


def _enter_first_step(
    spec: RolloutSpec, st: RolloutStatus, obs: Observation, now: float, events: tuple[Event, ...]
) -> _Outcome:
    waiting = _update(st, phase="Progressing", step=0, step_started_at=None, pause_reason=None)
    out = _progressing(spec, waiting, obs, now)
    return _Outcome(out.status, out.action, (*events, *out.events), out.consume_window)


def _progressing(spec: RolloutSpec, st: RolloutStatus, obs: Observation, now: float) -> _Outcome:
    analysis = spec.analysis
    started = st.step_started_at
    if started is None:
        if not obs.canary_ready:
            return _wait_for_pods(spec, st, now)
        ready = _update(st, last_measured_at=now, waiting_since=None)
        return _begin_step(spec, ready, _step_index(spec, st), now, (), True)

    events: list[Event] = []
    measured = False
    if st.last_measured_at is None or now - st.last_measured_at >= analysis.interval_seconds:
        measured = True
        m = measure(analysis, obs.window)
        st, event = _record(spec, st, m, now)
        events += event
        # Only the measurement that goes over a limit acts on it (a limit lowered mid-canary waits).
        if m.result == "failed" and st.failed > analysis.failure_limit:
            why = f"{st.failed} failed measurements, failureLimit {analysis.failure_limit}: {m.reasons[0]}"
            return _rollback(st, why, events=tuple(events), consume_window=True)
        if m.result == "error" and st.consecutive_errors > analysis.consecutive_error_limit:
            limit = analysis.consecutive_error_limit
            why = f"{st.consecutive_errors} unreadable measurements in a row, consecutiveErrorLimit {limit}"
            return _rollback(st, why, events=tuple(events), consume_window=True)
        if m.result == "inconclusive" and st.inconclusive > analysis.inconclusive_limit:
            st = _update(st, pause_reason="inconclusive")

    idx = _step_index(spec, st)
    step = spec.steps[idx]
    elapsed = step.pause_seconds is not None and now - started >= step.pause_seconds
    if st.pause_reason == "inconclusive":
        phase, reason = "Paused", "inconclusive"
    elif step.pause_seconds is None:
        phase, reason = "Paused", "manual"
    elif elapsed and st.step_successful > 0 and st.last_result == "successful":
        return _advance(spec, st, now, tuple(events), measured)
    elif elapsed and st.step_successful == 0:
        phase, reason = "Paused", "no_data"
    else:
        phase, reason = "Progressing", None
    if (phase, reason) != (st.phase, st.pause_reason):
        if reason is None:
            message = f"canary {st.canary_revision} goes on at step {idx + 1}/{len(spec.steps)}"
            events.append(Event("CanaryProgressing", message))
        else:
            events.append(_paused_event(spec, st, reason))
    new = _update(st, phase=phase, pause_reason=reason)
    return _Outcome(new, "none", tuple(events), measured)


def _paused_event(spec: RolloutSpec, st: RolloutStatus, reason: str) -> Event:
    idx = _step_index(spec, st)
    at = f"canary {st.canary_revision} paused at step {idx + 1}/{len(spec.steps)} ({_weight(spec, st)}%)"
    if reason == "manual":
        return Event("CanaryPaused", f"{at}: this step waits for a resume or promote command")
    if reason == "inconclusive":
        why = f"{st.inconclusive} inconclusive measurements: it needs a resume, promote or abort command"
        return Event("CanaryPaused", f"{at}: {why}", warning=True)
    why = "the pause ended without a successful measurement (no data never promotes); it goes on at the next"
    return Event("CanaryPaused", f"{at}: {why}", warning=True)


def _record(
    spec: RolloutSpec, st: RolloutStatus, m: Measurement, now: float
) -> tuple[RolloutStatus, list[Event]]:
    analysis = spec.analysis
    idx = _step_index(spec, st)
    detail = "; ".join(m.reasons) or m.summary
    at = f"step {idx + 1}/{len(spec.steps)} at {_weight(spec, st)}%"
    changes: dict[str, Any] = {
        "last_measured_at": now,
        "last_result": m.result,
        "consecutive_errors": st.consecutive_errors + 1 if m.result == "error" else 0,
        "message": f"{at}: measurement {m.result}: {detail}",
    }
    events: list[Event] = []
    canary = f"canary {st.canary_revision}"
    if m.result == "successful":
        changes.update(successful=st.successful + 1, step_successful=st.step_successful + 1)
    elif m.result == "failed":
        changes.update(failed=st.failed + 1)
        limit = f"{st.failed + 1} of {analysis.failure_limit + 1} allowed before rollback"
        events.append(
            Event("AnalysisFailed", f"{canary} failed a measurement ({limit}): {detail}", warning=True)
        )
    elif m.result == "error":
        n = st.consecutive_errors + 1
        limit = f"{n} in a row, rollback after {analysis.consecutive_error_limit + 1}"
        events.append(Event("AnalysisError", f"{canary}: {detail} ({limit})", warning=True))
    elif m.result == "inconclusive":
        changes.update(inconclusive=st.inconclusive + 1)
        if st.last_result != "inconclusive":
            events.append(Event("AnalysisInconclusive", f"{canary}: {detail}", warning=True))
    else:
        changes.update(no_data=st.no_data + 1)
        if st.last_result != "no_data":
            events.append(Event("AnalysisNoData", f"{canary}: {detail}"))
    return _update(st, **changes), events


def _begin_step(
    spec: RolloutSpec, st: RolloutStatus, idx: int, now: float, events: tuple[Event, ...], first: bool
) -> _Outcome:
    step = spec.steps[idx]
    manual = step.pause_seconds is None
    hold = "until a resume or promote command" if manual else f"for at least {step.pause_seconds}s"
    share = f"{step.weight}% of new sessions go to canary {st.canary_revision}"
    message = f"step {idx + 1}/{len(spec.steps)}: {share} {hold}"
    new = _update(
        st,
        phase="Paused" if manual else "Progressing",
        pause_reason="manual" if manual else None,
        step=idx,
        step_started_at=now,
        step_successful=0,
        last_result=None,
        message=message,
    )
    out_events = [*events, Event("CanaryStep", message)]
    if manual:
        out_events.append(_paused_event(spec, new, "manual"))
    return _Outcome(new, "set_weight", tuple(out_events), consume_window=first)


def _advance(
    spec: RolloutSpec, st: RolloutStatus, now: float, events: tuple[Event, ...], consume: bool
) -> _Outcome:
    idx = _step_index(spec, st)
    if idx + 1 >= len(spec.steps):
        out = _promote(st, f"all {len(spec.steps)} steps passed")
        return _Outcome(out.status, out.action, (*events, *out.events), consume)
    out = _begin_step(spec, st, idx + 1, now, events, False)
    return _Outcome(out.status, out.action, out.events, consume)


def _promote(st: RolloutStatus, why: str, obeyed: bool = False) -> _Outcome:
    message = f"canary {st.canary_revision} promoted ({why}): the stable Deployment rolls to it"
    new = _update(st, phase="Promoting", pause_reason=None, message=message)
    return _Outcome(new, "promote", (Event("CanaryPromoted", message),), obeyed=obeyed)


def _promoting(st: RolloutStatus, obs: Observation) -> _Outcome:
    revision = st.canary_revision
    if obs.stable_rolled_out and obs.stable_revision == revision:
        message = f"revision {revision} promoted: it runs on every stable pod"
        new = _update(
            st,
            phase="Stable",
            stable_revision=revision,
            canary_revision="",
            step=0,
            step_started_at=None,
            message=message,
        )
        return _Outcome(new, "finish_promotion", (Event("PromotionFinished", message),))
    return _Outcome(_update(st, message=f"promoting {revision}: the stable Deployment rolls to it"))


def _rollback(
    st: RolloutStatus,
    why: str,
    obeyed: bool = False,
    events: tuple[Event, ...] = (),
    consume_window: bool = False,
) -> _Outcome:
    message = f"canary {st.canary_revision} rolled back: {why}"
    new = _update(
        st,
        phase="RolledBack",
        canary_revision="",
        failed_revision=st.canary_revision,
        step=0,
        step_started_at=None,
        pause_reason=None,
        waiting_since=None,
        message=message,
    )
    rolled = Event("CanaryRolledBack", message, warning=True)
    return _Outcome(new, "rollback", (*events, rolled), consume_window, obeyed)
