"""A KnowledgeBase's status and Events, decided from what its knowledge server reports (GET /v1/status)
and the status it had (pure: the handler reads and writes around it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from agent_pod.knowledge.models import KnowledgeStatus

from .events import Event
from .spec_knowledge import MAX_STATUS_ERRORS, KnowledgeBaseStatus, StatusError
from .status import condition


@dataclass(frozen=True)
class KnowledgeObserved:
    generation: int
    server: KnowledgeStatus | None  # None: the server could not be read
    server_error: str = ""  # why it could not
    reconcile_error: str = ""


@dataclass(frozen=True)
class KnowledgeDecision:
    status: KnowledgeBaseStatus
    events: tuple[Event, ...]


def rfc3339(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch is not None else ""


def _error_key(e: StatusError) -> tuple[str, str, str, float]:
    return (e.source, e.reason, e.document, e.at)


def _newest_errors(server: KnowledgeStatus) -> list[StatusError]:
    errors = [StatusError(source=s.name, **e.model_dump()) for s in server.sources for e in s.errors]
    return sorted(errors, key=lambda e: (-e.at, e.source))[:MAX_STATUS_ERRORS]


def decide_knowledge(
    observed: KnowledgeObserved, previous: KnowledgeBaseStatus, now: str
) -> KnowledgeDecision:
    prev = {c.type: c for c in previous.conditions}
    gen = observed.generation
    server = observed.server
    problems: list[tuple[str, str]] = []
    if observed.reconcile_error:
        problems.append(("ReconcileFailed", observed.reconcile_error))
    if server is None:
        # What the base last reported stays shown; only readiness and the problem change.
        status = previous.model_copy(update={"observed_generation": gen})
        problems.append(("ServerUnreachable", observed.server_error or "the knowledge server did not answer"))
        ready = (False, "ServerUnreachable", problems[-1][1])
        stale_before = prev.get("Stale")
        stale = (
            (stale_before.status == "True", stale_before.reason, stale_before.message)
            if stale_before is not None
            else (False, "Unknown", "the knowledge server has not reported yet")
        )
        events: list[Event] = []
    else:
        attempts = [s.last_sync for s in server.sources if s.last_sync is not None]
        successes = [s.last_success for s in server.sources if s.last_success is not None]
        status = KnowledgeBaseStatus(
            documents=server.documents,
            chunks=server.chunks,
            index_bytes=server.index_bytes,
            last_sync_time=rfc3339(max(attempts, default=None)),
            last_success_time=rfc3339(min(successes, default=None)),
            stale_sources=sorted(s.name for s in server.sources if s.stale),
            errors=_newest_errors(server),
            embedding_model=server.embedding_model,
            generation=server.generation,
            observed_generation=gen,
        )
        ready = (
            (True, "IndexReady", f"{server.documents} documents, {server.chunks} chunks searchable")
            if server.ready
            else (False, "NoIndex", "no index is open and searchable yet")
        )
        stale = (
            (True, "SourcesStale", f"not synced within maxAgeSeconds: {_stale_summary(server)}")
            if status.stale_sources
            else (False, "Fresh", "every source is within its maxAgeSeconds")
        )
        if status.errors:
            first = status.errors[0]
            summary = "; ".join(f"{e.source}: {e.reason}: {e.message}" for e in status.errors[:3])
            problems.append((first.reason, summary))
        events = _events(previous, status)
    degraded = (
        bool(problems),
        problems[0][0] if problems else "AsExpected",
        "; ".join(m for _, m in problems)[:1000] if problems else "",
    )
    status.conditions = [
        condition(prev, "Ready", *ready, gen, now),
        condition(prev, "Stale", *stale, gen, now),
        condition(prev, "Degraded", *degraded, gen, now),
    ]
    return KnowledgeDecision(status, tuple(events))


def _stale_summary(server: KnowledgeStatus) -> str:
    """The stale sources, each with how many of its documents are past maxAgeSeconds when some are."""
    return ", ".join(
        f"{s.name} ({s.stale_documents} documents)" if s.stale_documents else s.name
        for s in sorted(server.sources, key=lambda s: s.name)
        if s.stale
    )


def _events(previous: KnowledgeBaseStatus, status: KnowledgeBaseStatus) -> list[Event]:
    """One Warning per source error not already in the status (not one per check), and one Event per
    change of the stale sources."""
    seen = {_error_key(e) for e in previous.errors}
    events = [
        Event(
            reason=e.reason,
            message=f"source {e.source}"
            + (f" document {e.document}" if e.document else "")
            + f": {e.message}",
            warning=True,
        )
        for e in reversed(status.errors)  # oldest first, as they happened
        if _error_key(e) not in seen
    ]
    before, after = set(previous.stale_sources), set(status.stale_sources)
    if after - before:
        names = ", ".join(sorted(after - before))
        events.append(Event("SourceStale", f"not synced successfully within maxAgeSeconds: {names}", True))
    if before - after:
        names = ", ".join(sorted(before - after))
        events.append(Event("SourceFresh", f"synced again: {names}"))
    return events
