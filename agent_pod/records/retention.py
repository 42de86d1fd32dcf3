"""How long recordings and audit logs are kept: what to delete (pure), the sweeps of a volume directory,
and the loop that runs a sweep at start and hourly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from . import metrics
from .audit_metrics import AUDIT_RETENTION_DELETED_TOTAL

log = logging.getLogger(__name__)

SWEEP_SECONDS = 3600.0
# What a call's audit folder holds: entries, the signed head, a head being replaced.
AUDIT_SUFFIXES = (".audit.jsonl", ".head.json", ".head.tmp")


class Stored(BaseModel):
    """A recording file or object, and when it was last written."""

    name: str
    modified: datetime


def expired(items: Iterable[Stored], now: datetime, retention_days: int) -> list[str]:
    """Names of the items last written more than ``retention_days`` before ``now``."""
    limit = now - timedelta(days=retention_days)
    return sorted(item.name for item in items if item.modified < limit)


def sweep_directory(root: Path, now: datetime, retention_days: int) -> list[str]:
    """Delete the expired recordings under ``root`` (and the directories they leave empty); their names.
    A call being recorded is rewritten every flush, so it never looks old."""
    items = []
    for path in root.rglob("*.wav"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        modified = datetime.fromtimestamp(stat.st_mtime, tz=now.tzinfo)
        items.append(Stored(name=str(path.relative_to(root)), modified=modified))
    gone = expired(items, now, retention_days)
    for name in gone:
        (root / name).unlink(missing_ok=True)
    metrics.RETENTION_DELETED_TOTAL.labels("volume").inc(len(gone))
    for dirpath, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        if Path(dirpath) != root:
            with contextlib.suppress(OSError):  # only succeeds when empty
                os.rmdir(dirpath)
    return gone


def sweep_audit_directory(root: Path, now: datetime, retention_days: int) -> list[str]:
    """Delete the calls under ``root`` (an audit directory) none of whose logs was written for
    ``retention_days``: a call goes whole (every leg and head), never a leg of it. A live call's log is
    rewritten on every entry, so it never looks old. Returns the call ids deleted."""
    calls = []
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            times = [p.stat().st_mtime for p in folder.iterdir() if p.name.endswith(AUDIT_SUFFIXES)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        if times:
            calls.append(Stored(name=folder.name, modified=datetime.fromtimestamp(max(times), tz=now.tzinfo)))
    gone = expired(calls, now, retention_days)
    for call in gone:
        folder = root / call
        for path in folder.iterdir():
            if path.name.endswith(AUDIT_SUFFIXES):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else in it: kept
            folder.rmdir()
    AUDIT_RETENTION_DELETED_TOTAL.inc(len(gone))
    return gone


async def sweep_forever(
    sweep: Callable[[], Awaitable[list[str]]], what: str, every: float = SWEEP_SECONDS
) -> None:
    """A retention sweep at start and then every ``every`` seconds; a failed sweep waits for the next."""
    while True:
        try:
            gone = await sweep()
            if gone:
                log.info("%s retention deleted %d", what, len(gone))
        except Exception:
            log.exception("%s retention sweep failed", what)
        await asyncio.sleep(every)
