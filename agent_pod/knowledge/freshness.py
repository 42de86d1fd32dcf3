"""The knowledge server's decisions about time and roles (pure): when a source is stale, when its
documents expire, how a sync went, and which replica ingests."""

from __future__ import annotations

from typing import Literal

from .models import SourceStatus
from .spec import SourceSpec

SyncOutcome = Literal["ok", "partial", "failed"]


def is_stale(source: SourceSpec, last_success: float | None, since: float, now: float) -> bool:
    """Not synced successfully for longer than maxAgeSeconds. Before a first success the server's start
    (``since``) counts: a restart does not make every source stale at once."""
    if source.max_age_seconds is None:
        return False
    return now - (last_success if last_success is not None else since) > source.max_age_seconds


def expiry(source: SourceSpec, last_success: float) -> float | None:
    """When the documents of a source synced at ``last_success`` stop being served (onStale withhold)."""
    if source.max_age_seconds is None or source.on_stale != "withhold":
        return None
    return last_success + source.max_age_seconds


def sync_outcome(status: SourceStatus, attempt: float) -> SyncOutcome:
    """ok: the attempt succeeded cleanly; partial: it succeeded but refused documents; failed."""
    if status.last_success is None or status.last_success < attempt:
        return "failed"
    return "partial" if status.errors else "ok"


def ingests(pod_name: str, replicas: int) -> bool:
    """Only the StatefulSet's first pod ingests when several serve (they share a pgvector store)."""
    return replicas == 1 or pod_name.endswith("-0")
