"""Retention: the pure decision, and the sweep of a volume directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_pod.records.retention import Stored, expired, sweep_directory

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
