"""How long recordings are kept: what to delete (pure), and the sweep of a volume directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from . import metrics


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
