"""The knowledge server's decisions (pure): how a sync went, which replica ingests, and from when a
document counts as fresh (which documents a sync vouches for, and a source's staleness, are the
ingestor's: ingest.vouched, ingest.is_stale, ingest.withhold_after)."""

from __future__ import annotations

from typing import Literal

from .models import SourceStatus

SyncOutcome = Literal["ok", "partial", "failed"]


def sync_outcome(status: SourceStatus, attempt: float) -> SyncOutcome:
    """ok: the attempt succeeded cleanly; partial: it succeeded but refused documents; failed."""
    if status.last_success is None or status.last_success < attempt:
        return "failed"
    return "partial" if status.errors else "ok"


def fresh_since(max_age_seconds: float, now: float) -> float:
    """A document last vouched for before this time is past its source's maxAgeSeconds: stale, and
    withheld under onStale withhold (one rule for the status and both stores' searches)."""
    return now - max_age_seconds


def document_stale(max_age_seconds: float | None, vouched_at: float | None, now: float) -> bool:
    """A document last vouched for at ``vouched_at`` is past its source's maxAgeSeconds (None: no
    policy, never stale)."""
    if max_age_seconds is None or vouched_at is None:
        return False
    return vouched_at < fresh_since(max_age_seconds, now)


def past(oldest: float | None, newest: float | None, since: float) -> Literal["none", "some", "all"]:
    """Which of a source's documents, last vouched for between ``oldest`` and ``newest`` (None: it has
    none), are past ``since`` (fresh_since): a store withholds all of a source by its name, cheaper than
    one document at a time."""
    if oldest is None or newest is None or oldest >= since:
        return "none"
    return "all" if newest < since else "some"


def ingests(pod_name: str, replicas: int) -> bool:
    """Only the StatefulSet's first pod ingests when several serve (they share a pgvector store)."""
    return replicas == 1 or pod_name.endswith("-0")
