"""Timings and bounds of the Redis-backed session directory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirectoryTuning:
    epsilon: float = 0.25  # no pod above (1 + epsilon) x average load
    heartbeat_seconds: float = 2.0
    stale_seconds: float = 6.0  # a pod whose heartbeat is older leaves placement
    pod_ttl_seconds: float = 60.0  # a dead pod's entry stays visible (stale) this long
    reservation_seconds: float = 15.0  # a created session holds its slot until the caller connects
    resume_window_seconds: float = 120.0  # a session whose transport was lost stays resumable
    pin_ttl_seconds: float = 300.0
    snapshot_ttl_seconds: float = 3600.0
    probe_timeout_seconds: float = 0.5  # TCP check of a pinned pod on resume
    max_backoff_seconds: float = 1.0  # probing a dead store: once a second at most, so a failover ends fast
    max_pending_snapshots: int = 10_000
    revision_stats_flush_seconds: float = 1.0  # a pod adds its counts to its revision's hash this often
    revision_stats_ttl_seconds: float = 7 * 24 * 3600.0  # counters outlive the revision's last pod


def ms(seconds: float) -> int:
    return int(seconds * 1000)
