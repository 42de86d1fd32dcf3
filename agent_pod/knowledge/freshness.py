"""The knowledge server's decisions (pure): how a sync went, and which replica ingests (staleness and
expiry are the ingestor's: ingest.is_stale, ingest.expiry)."""

from __future__ import annotations

from typing import Literal

from .models import SourceStatus

SyncOutcome = Literal["ok", "partial", "failed"]


def sync_outcome(status: SourceStatus, attempt: float) -> SyncOutcome:
    """ok: the attempt succeeded cleanly; partial: it succeeded but refused documents; failed."""
    if status.last_success is None or status.last_success < attempt:
        return "failed"
    return "partial" if status.errors else "ok"


def ingests(pod_name: str, replicas: int) -> bool:
    """Only the StatefulSet's first pod ingests when several serve (they share a pgvector store)."""
    return replicas == 1 or pod_name.endswith("-0")
