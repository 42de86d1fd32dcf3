"""Where audit logs are kept: the small protocol the writer needs, and a directory implementation.

A call's logs live under ``<root>/<call_id>/``: ``<leg>.audit.jsonl`` (the entries) and
``<leg>.head.json`` (the signed head), one leg per stream that served the call (a resumed or moved call
opens a new one). Methods are blocking: the writer calls them from a worker thread.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Protocol

from .retention import sweep_audit_directory

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(name: str) -> str:
    """A call id or leg as a path component (no separators, no '..')."""
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"not a valid call id or leg: {name!r}")
    return name


class AuditStore(Protocol):
    def write_entries(self, log: str, offset: int, data: bytes) -> None:
        """Write ``data`` at byte ``offset`` of the log's entries, dropping anything past ``offset``
        first (a torn earlier attempt): retrying a failed write is safe."""
        ...

    def write_head(self, log: str, head: bytes) -> None:
        """Replace the log's head atomically."""
        ...

    def read_entries(self, log: str) -> bytes: ...

    def read_head(self, log: str) -> bytes | None: ...

    def logs(self, call_id: str) -> list[str]:
        """The call's logs (``<call_id>/<leg>``), oldest first."""
        ...

    def expire(self, now: datetime, retention_days: int) -> list[str]:
        """Delete the calls none of whose logs was written for ``retention_days``; their ids."""
        ...


class DirectoryAuditStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, log: str) -> tuple[Path, Path]:
        call_id, _, leg = log.partition("/")
        folder = self.root / check_name(call_id)
        return folder / f"{check_name(leg)}.audit.jsonl", folder / f"{leg}.head.json"

    def write_entries(self, log: str, offset: int, data: bytes) -> None:
        entries, _ = self._paths(log)
        entries.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(entries, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            os.ftruncate(fd, offset)
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_head(self, log: str, head: bytes) -> None:
        _, path = self._paths(log)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(head)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read_entries(self, log: str) -> bytes:
        return self._paths(log)[0].read_bytes()

    def read_head(self, log: str) -> bytes | None:
        path = self._paths(log)[1]
        return path.read_bytes() if path.exists() else None

    def logs(self, call_id: str) -> list[str]:
        folder = self.root / check_name(call_id)
        legs = sorted(p.name.removesuffix(".audit.jsonl") for p in folder.glob("*.audit.jsonl"))
        return [f"{call_id}/{leg}" for leg in legs]

    def expire(self, now: datetime, retention_days: int) -> list[str]:
        return sweep_audit_directory(self.root, now, retention_days)
