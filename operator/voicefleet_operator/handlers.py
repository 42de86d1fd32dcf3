"""kopf handlers: react to VoiceAgent changes, and check the world on a timer.

kopf only reacts to changes, so a timer per VoiceAgent reads the children
(from in-memory indexes, never by listing) and Redis, repairs drift, runs the
autoscaler, keeps pod-deletion-costs in step before scale-down, and writes
``.status`` from what was observed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from . import operator_metrics
from .autoscale import Recommendation, decide
from .deletion_cost import COST_ANNOTATION, changed_costs, desired_costs
from .fleet_reader import FleetReader
from .kube import Kube
from .render import (
    AGENT_LABEL,
    HASH_ANNOTATION,
    MANAGED_BY,
    Owner,
    agent_config,
    render,
    resume_key_secret,
    selector_string,
)
from .spec import GROUP, PLURAL, VERSION, VoiceAgentSpec, VoiceAgentStatus
from .status import DeploymentView, Observed, PodProblem, compute_status, pod_problem

OBSERVE_INTERVAL = float(os.environ.get("VOICEFLEET_OBSERVE_INTERVAL", "2"))
STATUS_MIN_INTERVAL = float(os.environ.get("VOICEFLEET_STATUS_MIN_INTERVAL", "5"))
COST_REFRESH_INTERVAL = float(os.environ.get("VOICEFLEET_COST_REFRESH_INTERVAL", "60"))
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}


@dataclasses.dataclass(frozen=True)
class PodView:
    name: str
    cost: str | None
    terminating: bool
    problem: PodProblem | None = None


@dataclasses.dataclass
class AgentMemo:
    """What the operator remembers of one VoiceAgent between events (rebuilt on resume after a restart)."""

    applied_hash: str = ""
    prompt_id: str = ""
    rolled_out_prompt: str = ""
    reconcile_error: str = ""
    last_status_patch: float = 0.0
    last_cost_refresh: float = 0.0
    scale_history: tuple[Recommendation, ...] = ()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- startup -------------------------------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="voicefleet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="voicefleet.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    memo.kube = await Kube.connect()
    memo.fleet = FleetReader(
        memo.kube, os.environ.get("VOICEFLEET_DEFAULT_REDIS_URL", "redis://redis:6379/0")
    )
    memo.agents = {}


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.fleet.close()
    await memo.kube.close()


# --- indexes: children are kept in memory, never listed per event ---------------------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def voiceagents(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): {"spec": dict(body.spec), "uid": body.meta.uid}}


@kopf.index(GROUP, VERSION, PLURAL)
def prompt_refs(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    ref = (spec.get("prompt") or {}).get("configMapRef")
    return {(namespace, ref["name"]): name} if ref else {}


@kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS)
def agent_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    return {(namespace, labels[AGENT_LABEL]): DeploymentView.from_body(dict(body), HASH_ANNOTATION)}


@kopf.index("", "v1", "pods", labels=CHILD_LABELS)
def agent_pods(
    namespace: str | None,
    name: str,
    labels: kopf.Labels,
    annotations: kopf.Annotations,
    meta: kopf.Meta,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    view = PodView(
        name,
        annotations.get(COST_ANNOTATION),
        meta.get("deletionTimestamp") is not None,
        pod_problem(name, dict(status)),
    )
    return {(namespace, labels[AGENT_LABEL]): view}


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    for value in index.get(key, []):
        return value
    return None


def _memo(memo: kopf.Memo, namespace: str, name: str) -> AgentMemo:
    agents: dict[tuple[str, str], AgentMemo] = memo.agents
    return agents.setdefault((namespace, name), AgentMemo())


# --- reconcile: spec -> children -------------------------------------------------------------------------


async def reconcile(
    *,
    name: str,
    namespace: str,
    uid: str,
    spec_body: dict[str, Any],
    memo: kopf.Memo,
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    trigger: str,
    logger: logging.Logger | kopf.Logger,
) -> None:
    state = _memo(memo, namespace, name)
    kube: Kube = memo.kube
    started = time.perf_counter()
    try:
        spec = VoiceAgentSpec.model_validate(spec_body)
        prompt_text = await _prompt_text(kube, namespace, spec)
        owner = Owner(name=name, namespace=namespace, uid=uid)
        children = render(owner, spec, prompt_text, spec.replicas, memo.fleet.default_url)
        current = _one(agent_deployments, (namespace, name))
        if current is not None and spec.replicas < current.desired:
            await _write_deletion_costs(memo, namespace, name, spec, agent_pods, logger)
        if spec.resume_key_secret_ref is None:
            await kube.create_if_absent(resume_key_secret(owner, secrets.token_bytes(32)))
        for obj in children.all():
            await kube.apply(obj)
    except kopf.TemporaryError as exc:
        state.reconcile_error = str(exc)
        operator_metrics.RECONCILES.labels(trigger, "retry").inc()
        raise
    except ValidationError as exc:  # the CRD schema should have refused it; report, do not crash-loop
        state.reconcile_error = f"invalid spec: {exc.errors()[0]['msg']}"
        operator_metrics.RECONCILES.labels(trigger, "invalid").inc()
        raise kopf.PermanentError(state.reconcile_error) from exc
    except Exception as exc:
        state.reconcile_error = f"{type(exc).__name__}: {exc}"[:300]
        operator_metrics.RECONCILES.labels(trigger, "error").inc()
        operator_metrics.ERRORS.labels("reconcile").inc()
        raise kopf.TemporaryError(state.reconcile_error, delay=5) from exc
    finally:
        operator_metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    if state.applied_hash and state.applied_hash != children.config_hash:
        logger.info(f"configuration changed ({state.applied_hash} -> {children.config_hash}): rolling out")
    state.applied_hash = children.config_hash
    state.prompt_id = agent_config(owner, spec, prompt_text).prompt_id
    state.reconcile_error = ""
    operator_metrics.RECONCILES.labels(trigger, "ok").inc()


async def _prompt_text(kube: Kube, namespace: str, spec: VoiceAgentSpec) -> str:
    if spec.prompt.inline is not None:
        return spec.prompt.inline
    ref = spec.prompt.config_map_ref
    assert ref is not None  # the CRD requires exactly one source
    text = await kube.read_config_map_key(namespace, ref.name, ref.key)
    if text is None:
        raise kopf.TemporaryError(f"prompt ConfigMap {ref.name!r} has no key {ref.key!r}", delay=10)
    return text


async def _write_deletion_costs(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: VoiceAgentSpec,
    agent_pods: kopf.Index[Any, Any],
    logger: logging.Logger | kopf.Logger,
) -> None:
    """Before replicas go down: pods with fewer live sessions get lower costs, so they go first."""
    pods = [p for p in agent_pods.get((namespace, name), []) if not p.terminating]
    if not pods:
        return
    sessions = await memo.fleet.pod_sessions(namespace, name, spec)
    if sessions is None:  # Redis unreachable: keep the costs we had rather than guess
        logger.warning("session counts unavailable; pod-deletion-costs left as they are")
        return
    want = desired_costs(sessions, [p.name for p in pods])
    for pod, cost in changed_costs(want, {p.name: p.cost for p in pods}).items():
        await memo.kube.annotate_pod(namespace, pod, {COST_ANNOTATION: str(cost)})
        operator_metrics.DELETION_COST_PATCHES.inc()
    _memo(memo, namespace, name).last_cost_refresh = time.monotonic()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
async def spec_changed(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    memo: kopf.Memo,
    reason: str,
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    assert namespace is not None  # VoiceAgents are namespaced
    await reconcile(
        name=name,
        namespace=namespace,
        uid=uid,
        spec_body=dict(spec),
        memo=memo,
        agent_deployments=agent_deployments,
        agent_pods=agent_pods,
        trigger=str(reason),
        logger=logger,
    )


@kopf.on.event("", "v1", "configmaps")  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
async def prompt_config_map_changed(
    name: str,
    namespace: str | None,
    type: str | None,
    memo: kopf.Memo,
    prompt_refs: kopf.Index[Any, Any],
    voiceagents: kopf.Index[Any, Any],
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """A prompt ConfigMap changed: re-render the agents that use it (the hash rolls their pods)."""
    if namespace is None or type not in ("MODIFIED", "ADDED", "DELETED"):
        return
    for agent in prompt_refs.get((namespace, name), []):
        known = _one(voiceagents, (namespace, agent))
        if known is None:
            continue
        try:
            await reconcile(
                name=agent,
                namespace=namespace,
                uid=known["uid"],
                spec_body=known["spec"],
                memo=memo,
                agent_deployments=agent_deployments,
                agent_pods=agent_pods,
                trigger="prompt",
                logger=logger,
            )
        except kopf.TemporaryError as exc:  # the timer retries via drift repair
            logger.warning(f"prompt change of {agent} not applied yet: {exc}")


# --- deletion: the agent's Redis keys ----------------------------------------------------------------------

CLEANUP_ATTEMPTS = 3


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    body: kopf.Body,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Owned objects go by garbage collection; the Redis keys are ours, removed without blocking forever."""
    assert namespace is not None
    memo.agents.pop((namespace, name), None)
    operator_metrics.forget_agent(namespace, name)
    try:
        spec_model = VoiceAgentSpec.model_validate(dict(spec))
        removed = await memo.fleet.delete_keys(namespace, name, spec_model)
        logger.info(f"removed {removed} Redis keys of {namespace}/{name}")
    except Exception as exc:
        if retry + 1 < CLEANUP_ATTEMPTS:
            raise kopf.TemporaryError(f"Redis cleanup failed: {exc}", delay=2) from exc
        kopf.warn(
            body,
            reason="RedisCleanupFailed",
            message=f"gave up removing the agent's Redis keys after {CLEANUP_ATTEMPTS} attempts: {exc}",
        )


# --- the state-checking loop --------------------------------------------------------------------------


@kopf.timer(GROUP, VERSION, PLURAL, interval=OBSERVE_INTERVAL, initial_delay=1.0)  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
async def observe(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: kopf.Memo,
    patch: kopf.Patch,
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    assert namespace is not None
    started = time.perf_counter()
    state = _memo(memo, namespace, name)
    try:
        model = VoiceAgentSpec.model_validate(dict(spec))
    except ValidationError:
        return
    deployment = _one(agent_deployments, (namespace, name))

    # Drift: a child deleted or edited by hand, or a reconcile that failed earlier.
    if state.reconcile_error or deployment is None or deployment.config_hash != state.applied_hash:
        # A failure is recorded in state.reconcile_error and shown as Degraded.
        with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
            await reconcile(
                name=name,
                namespace=namespace,
                uid=uid,
                spec_body=dict(spec),
                memo=memo,
                agent_deployments=agent_deployments,
                agent_pods=agent_pods,
                trigger="drift",
                logger=logger,
            )

    fleet = await memo.fleet.fleet_view(namespace, name, model)

    replicas = model.replicas
    if model.autoscaling.enabled and fleet.active_sessions is not None:
        decision = decide(
            replicas, fleet.active_sessions, model.autoscaling, state.scale_history, time.monotonic()
        )
        state.scale_history = decision.history
        if decision.replicas != replicas:
            direction = "up" if decision.replicas > replicas else "down"
            operator_metrics.SCALE_DECISIONS.labels(direction).inc()
            kopf.info(
                body,
                reason="Autoscaled",
                message=f"{replicas} -> {decision.replicas} replicas: {fleet.active_sessions} live sessions, "
                f"buffer {model.autoscaling.buffer_sessions}, {model.autoscaling.sessions_per_pod} per pod",
            )
            await memo.kube.scale_agent(namespace, name, decision.replicas)
            replicas = decision.replicas
    # Slow refresh; the fresh write right before each scale-down happens in reconcile.
    if time.monotonic() - state.last_cost_refresh > COST_REFRESH_INTERVAL:
        await _write_deletion_costs(memo, namespace, name, model, agent_pods, logger)

    if deployment is not None and deployment.config_hash == state.applied_hash and deployment.rolled_out:
        state.rolled_out_prompt = state.prompt_id
    observed = Observed(
        generation=int(meta.get("generation", 0)),
        selector=selector_string(name),
        prompt_version=state.rolled_out_prompt or str(status.get("promptVersion", "")),
        desired_replicas=replicas,
        deployment=deployment,
        fleet=fleet,
        config_hash=state.applied_hash,
        reconcile_error=state.reconcile_error,
        pod_problems=tuple(
            p.problem for p in agent_pods.get((namespace, name), []) if p.problem and not p.terminating
        ),
    )
    previous = VoiceAgentStatus.model_validate(dict(status))
    new = compute_status(observed, previous, _now())
    if _differs(previous, new) and time.monotonic() - state.last_status_patch >= STATUS_MIN_INTERVAL:
        _transitions(body, previous, new)
        patch.status.update(new.dump())
        state.last_status_patch = time.monotonic()
        operator_metrics.STATUS_PATCHES.inc()
    operator_metrics.AGENT_SESSIONS.labels(namespace, name).set(new.active_sessions)
    operator_metrics.AGENT_CAPACITY.labels(namespace, name).set(new.capacity)
    operator_metrics.AGENT_REPLICAS.labels(namespace, name, "desired").set(new.desired_replicas)
    operator_metrics.AGENT_REPLICAS.labels(namespace, name, "ready").set(new.ready_replicas)
    operator_metrics.MANAGED_AGENTS.set(len(memo.agents))
    operator_metrics.OBSERVE_SECONDS.observe(time.perf_counter() - started)


def _differs(a: VoiceAgentStatus, b: VoiceAgentStatus) -> bool:
    strip = {"conditions": {"__all__": {"last_transition_time"}}}
    return a.model_dump(exclude=strip) != b.model_dump(exclude=strip)


def _transitions(body: kopf.Body, before: VoiceAgentStatus, after: VoiceAgentStatus) -> None:
    """A Kubernetes Event for each condition that changed its status (a first Degraded=False is news to
    nobody and gets none)."""
    old = {c.type: c.status for c in before.conditions}
    for c in after.conditions:
        first_healthy = c.type == "Degraded" and c.status == "False" and c.type not in old
        if old.get(c.type) != c.status and not first_healthy:
            emit = kopf.warn if (c.type == "Degraded" and c.status == "True") else kopf.info
            emit(
                body,
                reason=f"{c.type}{c.status}",
                message=f"{c.reason}: {c.message}" if c.message else c.reason,
            )
