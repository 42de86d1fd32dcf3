"""Prometheus metrics of the session layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PLACEMENT_SECONDS = Histogram(
    "voicefleet_placement_seconds",
    "Time to place (or re-place) a session and pin it, Redis round trips included.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
PLACEMENTS = Counter(
    "voicefleet_placements_total",
    "Session placements by result: placed, replaced (resume on a new pod), local (Redis down, served by "
    "this pod), no_capacity, unavailable.",
    ["result"],
)
# At 0 from start-up: a series born at 1 shows no rate() (the refusal alert counts from zero).
for _result in ("placed", "replaced", "local", "no_capacity", "unavailable"):
    PLACEMENTS.labels(_result)
ROLLOUT_PLACEMENTS = Counter(
    "voicefleet_rollout_placements_total",
    "Sessions placed (or re-placed) while a canary rollout is on, by the side of the split they went to: "
    "canary, stable.",
    ["side"],
)
REVISION_FALLBACKS = Counter(
    "voicefleet_placement_revision_fallbacks_total",
    "Sessions of one side of a canary split placed on the other side (to), because their own side had no "
    "pod with room.",
    ["to"],
)
for _side in ("canary", "stable"):
    ROLLOUT_PLACEMENTS.labels(_side)
    REVISION_FALLBACKS.labels(_side)
REDIS_ERRORS = Counter(
    "voicefleet_redis_errors_total", "Redis calls of the session layer that failed (connection, timeout)."
)
SNAPSHOT_QUEUE_DEPTH = Gauge(
    "voicefleet_snapshot_queue_depth", "Conversation snapshots waiting to be written to Redis."
)
SNAPSHOTS_DROPPED = Counter(
    "voicefleet_snapshots_dropped_total",
    "Queued snapshots dropped because the queue was full during a Redis outage (oldest first).",
)
AUTH_REFUSALS = Counter(
    "voicefleet_auth_refusals_total",
    "Session API calls and streams refused for their credential, by reason: missing, malformed, unknown_key, "
    "expired, invalid, scope (lacks the scope), tenant (another tenant's session).",
    ["reason"],
)
QUOTA_REFUSALS = Counter(
    "voicefleet_quota_refusals_total",
    "New or resumed sessions refused by a tenant quota, by tenant and limit (concurrency, rate).",
    ["tenant", "limit"],
)
