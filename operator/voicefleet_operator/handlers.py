"""kopf handlers: react to VoiceAgent changes, and check the world on a timer.

kopf only reacts to changes, so a timer per VoiceAgent reads the children
(from in-memory indexes, never by listing) and Redis, lets plan.plan_check
decide (repair drift, scale, refresh pod-deletion-costs, patch ``.status``, the
next step of a canary rollout) and carries the plan out (canary.py for the
rollout). pod-deletion-costs are also written right before any scale-down,
whoever lowered replicas. While a canary runs, the stable Deployment keeps its
revision: reconciles then apply only what is not revisioned, and its replicas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from agent_pod.config import KnowledgeSpec

from . import canary, operator_metrics
from .deletion_cost import COST_ANNOTATION, cost_writes
from .fleet_reader import FleetReader
from .knowledge_select import resolve
from .kube import Kube
from .plan import CheckInput, CheckMemory, Plan, PodView, Reconciled, StoreDown, Timing, plan_check
from .render import (
    AGENT_LABEL,
    HASH_ANNOTATION,
    MANAGED_BY,
    Children,
    Owner,
    agent_config,
    audit_key_secret,
    render,
    resume_key_secret,
)
from .render_canary import (
    EVAL_FOR_LABEL,
    TRACK_LABEL,
)
from .spec import GROUP, PLURAL, VERSION, RolloutStatus, VoiceAgentSpec, VoiceAgentStatus
from .spec_knowledge import KB_PLURAL
from .status import DeploymentView, pod_problem

OBSERVE_INTERVAL = float(os.environ.get("VOICEFLEET_OBSERVE_INTERVAL", "2"))
TIMING = Timing(
    status_min_interval=float(os.environ.get("VOICEFLEET_STATUS_MIN_INTERVAL", "5")),
    cost_refresh_interval=float(os.environ.get("VOICEFLEET_COST_REFRESH_INTERVAL", "60")),
)
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}


@dataclasses.dataclass
class AgentMemo:
    """What the operator remembers of one VoiceAgent between events (rebuilt on resume after a restart)."""

    reconciled: Reconciled = dataclasses.field(default_factory=Reconciled)
    check: CheckMemory = dataclasses.field(default_factory=CheckMemory)
    canary: canary.CanaryMemo = dataclasses.field(default_factory=canary.CanaryMemo)


def wall_now() -> str:
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


@kopf.index(GROUP, VERSION, KB_PLURAL)
def knowledgebases(namespace: str | None, name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    """The KnowledgeBases of each namespace with their labels: what spec.knowledge selects from."""
    return {namespace: (name, dict(labels))}


@kopf.index(GROUP, VERSION, PLURAL)
def prompt_refs(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    ref = (spec.get("prompt") or {}).get("configMapRef")
    return {(namespace, ref["name"]): name} if ref else {}


@kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS)
def agent_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """Keyed by (namespace, agent, track): the stable Deployment, and the canary's beside it."""
    track = labels.get(TRACK_LABEL, "stable")
    return {(namespace, labels[AGENT_LABEL], track): DeploymentView.from_body(dict(body), HASH_ANNOTATION)}


@kopf.index("batch", "v1", "jobs", labels={EVAL_FOR_LABEL: kopf.PRESENT})
def eval_jobs(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): canary.EvalJobView.from_body(dict(body))}


@kopf.index("", "v1", "pods", labels={EVAL_FOR_LABEL: kopf.PRESENT})
def eval_messages(
    namespace: str | None, labels: kopf.Labels, status: kopf.Status, **_: Any
) -> dict[Any, Any]:
    """The termination message (the eval's summary) of each eval Job's pod, keyed by the Job."""
    message = canary.termination_message(dict(status))
    job = labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")
    return {(namespace, job): message} if job and message is not None else {}


@kopf.index("", "v1", "pods", labels={**CHILD_LABELS, AGENT_LABEL: kopf.PRESENT})  # not knowledge servers
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
    knowledgebases: kopf.Index[Any, Any],
    rollout: RolloutStatus | None = None,
) -> None:
    state = _memo(memo, namespace, name)
    kube: Kube = memo.kube
    started = time.perf_counter()

    def failed(error: str) -> str:
        state.reconciled = dataclasses.replace(state.reconciled, error=error)
        return error

    try:
        spec = VoiceAgentSpec.model_validate(spec_body)
        prompt_text = await _prompt_text(kube, namespace, spec)
        owner = Owner(name=name, namespace=namespace, uid=uid)
        knowledge = _knowledge(spec, namespace, knowledgebases, logger)
        children = render(owner, spec, prompt_text, spec.replicas, memo.fleet.default_url, knowledge)
        current = _one(agent_deployments, (namespace, name, "stable"))
        if current is not None and spec.replicas < current.desired:
            await _costs_before_scale_down(memo, namespace, name, spec, agent_pods, logger)
        if spec.resume_key_secret_ref is None:
            await kube.create_if_absent(resume_key_secret(owner, secrets.token_bytes(32)))
        if spec.audit.enabled and spec.audit.signing_key_secret_ref is None:
            await kube.create_if_absent(audit_key_secret(owner, secrets.token_bytes(32)))
        held = _held_stable(spec, current, children.config_hash, state.check.rollout or rollout)
        if held is None:
            for obj in children.all():
                await kube.apply(obj)
        else:  # a canary decides when the stable pods change: only their number follows the spec
            for obj in (children.service, children.headless_service, children.pdb):
                await kube.apply(obj)
            if held.desired != spec.replicas:
                await kube.set_replicas(namespace, name, spec.replicas)
    except kopf.TemporaryError as exc:
        failed(str(exc))
        operator_metrics.RECONCILES.labels(trigger, "retry").inc()
        raise
    except ValidationError as exc:  # the CRD schema should have refused it; report, do not crash-loop
        operator_metrics.RECONCILES.labels(trigger, "invalid").inc()
        raise kopf.PermanentError(failed(f"invalid spec: {exc.errors()[0]['msg']}")) from exc
    except Exception as exc:
        operator_metrics.RECONCILES.labels(trigger, "error").inc()
        operator_metrics.ERRORS.labels("reconcile").inc()
        raise kopf.TemporaryError(failed(f"{type(exc).__name__}: {exc}"[:300]), delay=5) from exc
    finally:
        operator_metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    before = state.reconciled.applied_hash
    if held is not None:
        if state.reconciled.desired_hash != children.config_hash:
            logger.info(f"configuration changed ({held.config_hash} -> {children.config_hash}): canary")
        state.reconciled = Reconciled(applied_hash=held.config_hash, desired_hash=children.config_hash)
    else:
        if before and before != children.config_hash:
            logger.info(f"configuration changed ({before} -> {children.config_hash}): rolling out")
        state.reconciled = Reconciled(
            applied_hash=children.config_hash,
            prompt_id=agent_config(owner, spec, prompt_text, knowledge).prompt_id,
            desired_hash=children.config_hash,
        )
    operator_metrics.RECONCILES.labels(trigger, "ok").inc()


def _knowledge(
    spec: VoiceAgentSpec,
    namespace: str,
    knowledgebases: kopf.Index[Any, Any],
    logger: logging.Logger | kopf.Logger,
) -> KnowledgeSpec | None:
    """spec.knowledge resolved against the namespace's KnowledgeBases (the index knowledge_bases)."""
    if spec.knowledge is None:
        return None
    bases = {name: labels for name, labels in knowledgebases.get(namespace, [])}
    resolution = resolve(spec.knowledge, namespace, bases)
    if resolution.missing:  # rendered without them; a base that appears re-renders the agent
        logger.warning(f"knowledge bases not found in {namespace}: {', '.join(resolution.missing)}")
    return resolution.knowledge


def _held_stable(
    spec: VoiceAgentSpec, stable: DeploymentView | None, desired: str, rollout: RolloutStatus | None
) -> DeploymentView | None:
    """The stable Deployment when it must keep its revision: a canary strategy, a stable revision
    that differs from the spec's, and no promotion of the spec's revision under way."""
    if spec.rollout.strategy != "canary" or stable is None or not stable.config_hash:
        return None
    if stable.config_hash == desired:
        return None
    if rollout is not None and rollout.phase == "Promoting" and rollout.canary_revision == desired:
        return None
    return stable


async def _prompt_text(kube: Kube, namespace: str, spec: VoiceAgentSpec) -> str:
    if spec.prompt.inline is not None:
        return spec.prompt.inline
    ref = spec.prompt.config_map_ref
    assert ref is not None  # the CRD requires exactly one source
    text = await kube.read_config_map_key(namespace, ref.name, ref.key)
    if text is None:
        raise kopf.TemporaryError(f"prompt ConfigMap {ref.name!r} has no key {ref.key!r}", delay=10)
    return text


async def _costs_before_scale_down(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    spec: VoiceAgentSpec,
    agent_pods: kopf.Index[Any, Any],
    logger: logging.Logger | kopf.Logger,
) -> None:
    """Replicas are about to go down (autoscaler or scale subresource): fresh costs, so the pods
    with the fewest sessions go first."""
    current = {p.name: p.cost for p in agent_pods.get((namespace, name), []) if not p.terminating}
    if not current:
        return
    fleet = await memo.fleet.read_or_down(namespace, name, spec)
    if isinstance(fleet, StoreDown):  # keep the costs we had rather than guess
        logger.warning(f"pod-deletion-costs left as they are before this scale-down: {fleet.error}")
        return
    await _write_costs(memo.kube, namespace, cost_writes(fleet, current))
    state = _memo(memo, namespace, name)
    state.check = dataclasses.replace(state.check, last_cost_refresh=time.monotonic())


async def _write_costs(kube: Kube, namespace: str, costs: Mapping[str, int]) -> None:
    for pod, cost in costs.items():
        await kube.annotate_pod(namespace, pod, {COST_ANNOTATION: str(cost)})
        operator_metrics.DELETION_COST_PATCHES.inc()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
async def spec_changed(
    name: str,
    namespace: str | None,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: kopf.Memo,
    reason: str,
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    knowledgebases: kopf.Index[Any, Any],
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
        knowledgebases=knowledgebases,
        trigger=str(reason),
        logger=logger,
        rollout=_persisted_rollout(status),
    )


def _persisted_rollout(status: kopf.Status) -> RolloutStatus:
    try:
        return VoiceAgentStatus.model_validate(dict(status)).rollout
    except ValidationError:
        return RolloutStatus()


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
    knowledgebases: kopf.Index[Any, Any],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """A prompt ConfigMap changed: re-render the agents that use it (the hash rolls their pods)."""
    if namespace is None or type not in ("MODIFIED", "ADDED", "DELETED"):
        return
    agents = [
        (agent, known)
        for agent in prompt_refs.get((namespace, name), [])
        if (known := _one(voiceagents, (namespace, agent))) is not None
    ]
    await rerender_agents(
        namespace,
        agents,
        trigger="prompt",
        memo=memo,
        agent_deployments=agent_deployments,
        agent_pods=agent_pods,
        knowledgebases=knowledgebases,
        logger=logger,
    )


async def rerender_agents(
    namespace: str,
    agents: list[tuple[str, dict[str, Any]]],
    *,
    trigger: str,
    memo: kopf.Memo,
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    knowledgebases: kopf.Index[Any, Any],
    logger: kopf.Logger,
) -> None:
    """Render ``agents`` (name, indexed body) again after something they use changed; an agent that cannot be
    rendered now is left to its timer, which repairs drift, and the others still are."""
    for agent, known in agents:
        try:
            await reconcile(
                name=agent,
                namespace=namespace,
                uid=known["uid"],
                spec_body=known["spec"],
                memo=memo,
                agent_deployments=agent_deployments,
                agent_pods=agent_pods,
                knowledgebases=knowledgebases,
                trigger=trigger,
                logger=logger,
            )
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            logger.warning(f"{trigger} change not applied to {agent} yet: {exc}")


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
    knowledgebases: kopf.Index[Any, Any],
    eval_jobs: kopf.Index[Any, Any],
    eval_messages: kopf.Index[Any, Any],
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
    previous = VoiceAgentStatus.model_validate(dict(status))
    measured_at = (state.check.rollout or previous.rollout).last_measured_at
    stable = _one(agent_deployments, (namespace, name, "stable"))
    canary_view = _one(agent_deployments, (namespace, name, "canary"))
    rollout_in = None
    if state.reconciled.desired_hash and not state.reconciled.error:  # the spec rendered
        rollout_in = await canary.observe(
            memo.fleet,
            state.canary,
            canary.Seen(
                namespace=namespace,
                name=name,
                spec=model,
                rollout=state.check.rollout or previous.rollout,
                desired_revision=state.reconciled.desired_hash,
                stable=stable,
                canary=canary_view,
                annotations=dict(meta.get("annotations") or {}),
            ),
            lambda job: (_one(eval_jobs, (namespace, job)), _one(eval_messages, (namespace, job))),
        )
    plan = plan_check(
        CheckInput(
            name=name,
            spec=model,
            generation=int(meta.get("generation", 0)),
            previous=previous,
            deployment=stable,
            pods=tuple(agent_pods.get((namespace, name), [])),
            fleet=await memo.fleet.read_or_down(namespace, name, model),
            reconciled=state.reconciled,
            memory=state.check,
            now=time.monotonic(),
            wall=wall_now(),
            rollout=rollout_in,
            epoch=time.time(),
        ),
        TIMING,
    )
    # Stored before the I/O: a repair below may note a cost write of its own in it.
    state.check = plan.memory
    for line in plan.warnings:
        logger.warning(line)
    for line in plan.infos:
        logger.info(line)

    async def reconcile_now(trigger: str) -> None:
        # A failure is recorded in state.reconciled and shown as Degraded by a later check.
        with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
            await reconcile(
                name=name,
                namespace=namespace,
                uid=uid,
                spec_body=dict(spec),
                memo=memo,
                agent_deployments=agent_deployments,
                agent_pods=agent_pods,
                knowledgebases=knowledgebases,
                trigger=trigger,
                logger=logger,
            )

    if plan.repair:
        await reconcile_now("drift")
    for event in plan.events:
        (kopf.warn if event.warning else kopf.info)(body, reason=event.reason, message=event.message)
    await _write_costs(memo.kube, namespace, plan.cost_writes)
    if plan.scale is not None:
        operator_metrics.SCALE_DECISIONS.labels(plan.scale.direction).inc()
        await memo.kube.scale_agent(namespace, name, plan.scale.replicas)
    if plan.rollout is not None:
        if rollout_in is not None and rollout_in.command is not None:
            patch.metadata.annotations[canary.COMMAND_ANNOTATION] = None  # obeyed or refused: said once
        try:
            measured = plan.rollout.status.last_measured_at != measured_at
            owner = Owner(name=name, namespace=namespace, uid=uid)
            await canary.carry_out(
                memo.kube,
                memo.fleet,
                state.canary,
                owner,
                model,
                plan.rollout,
                measured,
                canary_view,
                lambda: _render_desired(
                    memo.kube, owner, model, memo.fleet.default_url, knowledgebases, logger
                ),
            )
        except Exception as exc:  # the next check decides again from what is there
            operator_metrics.ERRORS.labels("rollout").inc()
            logger.warning(
                f"rollout step {plan.rollout.action} not carried out yet: {type(exc).__name__}: {exc}"
            )
        if plan.rollout.action == "promote":  # the stable Deployment takes the promoted revision
            await reconcile_now("promote")
    if plan.status_patch is not None:
        patch.status.update(plan.status_patch.dump())
        operator_metrics.STATUS_PATCHES.inc()
    _gauges(memo, namespace, name, plan)
    operator_metrics.OBSERVE_SECONDS.observe(time.perf_counter() - started)


async def _render_desired(
    kube: Kube,
    owner: Owner,
    spec: VoiceAgentSpec,
    default_redis_url: str,
    knowledgebases: kopf.Index[Any, Any],
    logger: logging.Logger | kopf.Logger,
) -> Children:
    prompt_text = await _prompt_text(kube, owner.namespace, spec)
    knowledge = _knowledge(spec, owner.namespace, knowledgebases, logger)
    return render(owner, spec, prompt_text, spec.replicas, default_redis_url, knowledge)


def _gauges(memo: kopf.Memo, namespace: str, name: str, plan: Plan) -> None:
    now = plan.observed
    operator_metrics.AGENT_SESSIONS.labels(namespace, name).set(now.active_sessions)
    operator_metrics.AGENT_CAPACITY.labels(namespace, name).set(now.capacity)
    operator_metrics.AGENT_REPLICAS.labels(namespace, name, "desired").set(now.desired_replicas)
    operator_metrics.AGENT_REPLICAS.labels(namespace, name, "ready").set(now.ready_replicas)
    operator_metrics.MANAGED_AGENTS.set(len(memo.agents))
