"""kopf handlers of KnowledgeBases: render and apply their children, copy what each knowledge server
reports into the status on a timer (knowledge_status.decide_knowledge decides), and re-render the
VoiceAgents that select a base when it appears, goes or changes labels. Children go by garbage
collection (owner references)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import kopf
from pydantic import ValidationError

from agent_pod.knowledge import paths
from agent_pod.knowledge.models import KnowledgeStatus
from agent_pod.knowledge.spec import KnowledgeBaseSpec

from . import operator_metrics
from .handlers import rerender_agents, wall_now
from .knowledge_status import KnowledgeObserved, decide_knowledge
from .kube import Kube
from .render import Owner
from .render_knowledge import render_knowledge
from .spec import GROUP, VERSION
from .spec_knowledge import DEFAULT_KNOWLEDGE_IMAGE, KB_PLURAL, KnowledgeBaseStatus

KB_OBSERVE_INTERVAL = float(os.environ.get("VOICEFLEET_KB_OBSERVE_INTERVAL", "10"))
# The knowledge server's image (the Dockerfile's target `knowledge`); the chart sets it.
KNOWLEDGE_IMAGE = os.environ.get("VOICEFLEET_KNOWLEDGE_IMAGE", DEFAULT_KNOWLEDGE_IMAGE)
STATUS_TIMEOUT_SECONDS = 5.0
# Not under voicefleet.io/: kopf leaves its own storage prefix's annotations out of the diffs it reacts to.
SYNC_ANNOTATION = "knowledge.voicefleet.io/sync-requested"


@kopf.on.startup()
async def knowledge_startup(memo: kopf.Memo, **_: Any) -> None:
    memo.kb_errors = {}  # (namespace, name) -> the last reconcile error ("" once it applied): Degraded
    memo.kb_labels = {}  # (namespace, name) -> labels last seen (None: deleted)


def _errors(memo: kopf.Memo) -> dict[tuple[str, str], str]:
    errors: dict[tuple[str, str], str] = memo.kb_errors
    return errors


@kopf.on.resume(GROUP, VERSION, KB_PLURAL)
@kopf.on.create(GROUP, VERSION, KB_PLURAL)
@kopf.on.update(GROUP, VERSION, KB_PLURAL, field="spec")
async def knowledge_spec_changed(
    name: str, namespace: str | None, uid: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> None:
    assert namespace is not None  # KnowledgeBases are namespaced
    errors = _errors(memo)
    started = time.perf_counter()
    try:
        model = KnowledgeBaseSpec.model_validate(dict(spec))
        children = render_knowledge(Owner(name=name, namespace=namespace, uid=uid), model, KNOWLEDGE_IMAGE)
        kube: Kube = memo.kube
        for obj in children.all():
            await kube.apply(obj)
    except ValidationError as exc:  # the CRD schema should have refused it
        errors[(namespace, name)] = f"invalid spec: {exc.errors()[0]['msg']}"
        operator_metrics.RECONCILES.labels("knowledge", "invalid").inc()
        raise kopf.PermanentError(errors[(namespace, name)]) from exc
    except Exception as exc:
        errors[(namespace, name)] = f"{type(exc).__name__}: {exc}"[:300]
        operator_metrics.RECONCILES.labels("knowledge", "error").inc()
        raise kopf.TemporaryError(errors[(namespace, name)], delay=5) from exc
    finally:
        operator_metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    errors[(namespace, name)] = ""
    operator_metrics.RECONCILES.labels("knowledge", "ok").inc()


@kopf.on.delete(GROUP, VERSION, KB_PLURAL, optional=True)  # optional: no finalizer, GC removes the children
async def knowledge_deleted(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    _errors(memo).pop((namespace or "", name), None)


@kopf.on.event(GROUP, VERSION, KB_PLURAL)  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
async def knowledge_base_seen(
    name: str,
    namespace: str | None,
    type: str | None,
    labels: kopf.Labels,
    memo: kopf.Memo,
    voiceagents: kopf.Index[Any, Any],
    agent_deployments: kopf.Index[Any, Any],
    agent_pods: kopf.Index[Any, Any],
    knowledgebases: kopf.Index[Any, Any],
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """A base appeared, went or changed (its labels): the namespace's agents that select bases are
    rendered again; those whose resolution did not change render the same objects (no rollout)."""
    if namespace is None or type not in ("ADDED", "MODIFIED", "DELETED"):
        return
    seen: dict[tuple[str, str], dict[str, str] | None] = memo.kb_labels
    now = None if type == "DELETED" else dict(labels)
    if (namespace, name) in seen and seen[(namespace, name)] == now:
        return  # a status write or the operator's own annotations: what agents select from is the same
    seen[(namespace, name)] = now
    agents = [
        (agent, entry)
        for (agent_namespace, agent), known in voiceagents.items()
        if agent_namespace == namespace
        and (entry := next(iter(known), None)) is not None
        and entry["spec"].get("knowledge")
    ]
    await rerender_agents(
        namespace,
        agents,
        trigger="knowledge",
        memo=memo,
        agent_deployments=agent_deployments,
        agent_pods=agent_pods,
        knowledgebases=knowledgebases,
        logger=logger,
    )


async def read_server_status(kube: Kube, namespace: str, name: str) -> tuple[KnowledgeStatus | None, str]:
    """GET /v1/status of the base's Service; (None, why) when it cannot be read."""
    try:
        body = await asyncio.wait_for(
            kube.service_request("GET", namespace, paths.resource_name(name), paths.HTTP_PORT, "/v1/status"),
            STATUS_TIMEOUT_SECONDS,
        )
        return KnowledgeStatus.model_validate(body), ""
    except ValidationError as exc:
        return None, f"the knowledge server's status is malformed: {exc.errors()[0]['msg']}"
    except Exception as exc:  # no ready pod yet (503 from the proxy), a timeout, ...
        return None, f"GET /v1/status failed: {type(exc).__name__}: {str(exc)[:200]}"


@kopf.on.field(GROUP, VERSION, KB_PLURAL, field=("metadata", "annotations", SYNC_ANNOTATION))
async def knowledge_sync_requested(
    name: str, namespace: str | None, new: Any, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """A backfill: ``kubectl annotate kb NAME knowledge.voicefleet.io/sync-requested=$(date +%s) --overwrite``
    makes the knowledge server sync every source now (POST /v1/sync), retried until it is delivered."""
    if namespace is None or not new:
        return
    kube: Kube = memo.kube
    try:
        await asyncio.wait_for(
            kube.service_request(
                "POST", namespace, paths.resource_name(name), paths.HTTP_PORT, "/v1/sync", {"sources": None}
            ),
            STATUS_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # no ready server yet, a timeout: kopf retries the handler
        why = f"sync request not delivered: {type(exc).__name__}: {exc}"[:300]
        raise kopf.TemporaryError(why, delay=5) from exc
    kopf.info(body, reason="SyncRequested", message=f"every source syncs now (request {new})")


@kopf.timer(GROUP, VERSION, KB_PLURAL, interval=KB_OBSERVE_INTERVAL, initial_delay=1.0)
async def observe_knowledge(
    name: str,
    namespace: str | None,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    assert namespace is not None
    server, error = await read_server_status(memo.kube, namespace, name)
    previous = KnowledgeBaseStatus.model_validate(dict(status))
    decision = decide_knowledge(
        KnowledgeObserved(
            generation=int(meta.get("generation", 0)),
            server=server,
            server_error=error,
            reconcile_error=_errors(memo).get((namespace, name), ""),
        ),
        previous,
        wall_now(),
    )
    for event in decision.events:
        (kopf.warn if event.warning else kopf.info)(body, reason=event.reason, message=event.message)
    new = decision.status.dump()
    if new != previous.dump():
        patch.status.update(new)
        operator_metrics.STATUS_PATCHES.inc()
