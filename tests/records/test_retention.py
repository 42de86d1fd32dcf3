"""Retention: the pure decision, the sweep of a volume directory, and of the audit logs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_pod.config import AuditSpec
from agent_pod.records.audit import CallAudit
from agent_pod.records.audit_store import DirectoryAuditStore
from agent_pod.records.call_audits import CallAudits
from agent_pod.records.retention import Stored, expired, sweep_directory
from tests.support.pod import synthetic_config

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def test_expired_is_older_than_the_retention() -> None:
    items = [
        Stored(name="new", modified=NOW - timedelta(days=1)),
        Stored(name="edge", modified=NOW - timedelta(days=30) + timedelta(seconds=1)),
        Stored(name="old", modified=NOW - timedelta(days=30, seconds=1)),
    ]
    assert expired(items, NOW, 30) == ["old"]
    assert expired(items, NOW, 1) == ["edge", "old"]


def test_volume_sweep_deletes_old_recordings_and_their_empty_days(tmp_path: Path) -> None:
    old = tmp_path / "desk/2025-05-01/a.wav"
    new = tmp_path / "desk/2025-06-29/b.wav"
    other = tmp_path / "desk/2025-05-01/notes.txt"  # not a recording: never touched
    for path in (old, new):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    other.write_text("x")
    stamp = (NOW - timedelta(days=60)).timestamp()
    os.utime(old, (stamp, stamp))
    os.utime(other, (stamp, stamp))
    assert sweep_directory(tmp_path, NOW, 30) == ["desk/2025-05-01/a.wav"]
    assert not old.exists() and new.exists() and other.exists()
    other.unlink()
    sweep_directory(tmp_path, NOW, 30)
    assert not (tmp_path / "desk/2025-05-01").exists()  # an emptied day goes too
    assert new.exists()


async def audited_call(root: Path, call_id: str, legs: list[str], age_days: list[float]) -> None:
    """A call's logs (call_started only) written by the real writer, each leg last written age_days ago."""
    for leg, age in zip(legs, age_days, strict=True):
        audit = CallAudit(DirectoryAuditStore(root), AuditSpec(enabled=True), None, call_id, leg)
        audit.started(
            agent="desk", namespace="ns", prompt_id="p", prompt_version="v1", pod="pod-a", transport="grpc"
        )
        await audit.close()
        stamp = (NOW - timedelta(days=age)).timestamp()
        for path in (root / call_id).glob(f"{leg}.*"):
            os.utime(path, (stamp, stamp))


async def test_audit_retention_deletes_whole_calls_whose_logs_are_all_old(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    await audited_call(root, "old-call", ["0001-pod-a", "0002-pod-b"], [400, 366])
    await audited_call(root, "resumed-call", ["0001-pod-a", "0002-pod-b"], [400, 10])  # a leg is recent
    await audited_call(root, "new-call", ["0001-pod-a"], [1])
    stray = root / "old-call" / "notes.txt"  # not an audit log: never touched
    stray.write_text("x")
    keep = CallAudits(synthetic_config(audit={"enabled": True}), DirectoryAuditStore(root), None, "pod-a")
    assert await keep.sweep(NOW) == []  # no retentionDays: audit logs are kept
    config = synthetic_config(audit={"enabled": True, "retentionDays": 365})
    audits = CallAudits(config, DirectoryAuditStore(root), None, "pod-a")
    assert await audits.sweep(NOW) == ["old-call"]
    assert [p.name for p in (root / "old-call").iterdir()] == ["notes.txt"]
    assert audits.store.logs("resumed-call") == ["resumed-call/0001-pod-a", "resumed-call/0002-pod-b"]
    assert audits.store.logs("new-call") == ["new-call/0001-pod-a"]
