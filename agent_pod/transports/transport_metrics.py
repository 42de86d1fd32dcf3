"""Prometheus metrics of the transports (voicefleet_transport_*)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SESSIONS_ACTIVE = Gauge(
    "voicefleet_transport_sessions_active", "Live sessions on this pod, by transport.", ["transport"]
)
SESSIONS_TOTAL = Counter(
    "voicefleet_transport_sessions_total",
    "Sessions ended on this pod, by transport and reason.",
    ["transport", "reason"],
)
ADMISSIONS_REFUSED_TOTAL = Counter(
    "voicefleet_transport_admissions_refused_total",
    "Streams refused before a session started, by transport and code.",
    ["transport", "code"],
)
BAD_INPUT_TOTAL = Counter(
    "voicefleet_transport_bad_input_total",
    "Caller input refused with an error (the session went on), by transport and reason.",
    ["transport", "reason"],
)
DROPPED_FRAMES_TOTAL = Counter(
    "voicefleet_transport_dropped_frames_total",
    "Agent audio frames dropped because the caller did not read them in time.",
    ["transport"],
)
PLAYOUT_MISSED_TICKS_TOTAL = Counter(
    "voicefleet_transport_playout_missed_ticks_total",
    "Playout ticks the pod's loop woke up too late for: caught up in a burst, or lost (agent audio delayed).",
    ["outcome"],
)
# Outcomes the alerts and the dashboard count are exported at 0 from start-up: a series born at 1
# shows no rate() or increase(), and a healthy pod's stall panel shows zero rather than nothing.
for _outcome in ("caught_up", "lost"):
    PLAYOUT_MISSED_TICKS_TOTAL.labels(_outcome)
PLAYOUT_FANOUT_SECONDS = Histogram(
    "voicefleet_transport_playout_fanout_seconds",
    "Time the pod's shared playout loop spends handing one 20 ms frame to every live session.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
)
SEND_DELAY_SECONDS = Histogram(
    "voicefleet_transport_send_delay_seconds",
    "Agent audio: a frame handed to the transport on a playout tick -> taken for sending "
    "(gRPC: the stream write is done; WebRTC: the packet goes to the RTP sender).",
    ["transport"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
TELEPHONY_CLEAR_SECONDS = Histogram(
    "voicefleet_telephony_clear_seconds",
    "Phone calls: the session decided the caller interrupts -> the carrier's clear is written to its "
    "WebSocket, by carrier.",
    ["carrier"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
MIGRATIONS_TOTAL = Counter(
    "voicefleet_migrations_total",
    "Live calls this pod tried to move while draining, by outcome: moved; stayed because no quiet "
    "moment came (not_quiet), no pod could take it (no_target), Redis was down (store_down), the "
    "caller could not reach the new pod (caller_failed) or did not follow in time (not_followed).",
    ["outcome"],
)
for _outcome in ("moved", "not_quiet", "no_target", "store_down", "caller_failed", "not_followed", "error"):
    MIGRATIONS_TOTAL.labels(_outcome)
MIGRATION_HANDOVER_SECONDS = Histogram(
    "voicefleet_migration_handover_seconds",
    "Old pod: call frozen at a quiet moment -> the caller reports it follows (or its stream ends).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MIGRATION_GAP_SECONDS = Histogram(
    "voicefleet_migration_gap_seconds",
    "New pod: old pod stopped listening -> this pod listens (held caller audio replayed): what the call "
    "was deaf for. Wall clocks of two pods; exact on one node.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TRANSFERS_TOTAL = Counter(
    "voicefleet_transfers_total",
    "Calls this pod tried to hand to another VoiceAgent, by outcome: transferred; refused before the move "
    "(not_allowed, unknown_target, no_ready_pod, ...); not_quiet, caller_failed, not_followed, error.",
    ["outcome"],
)
for _outcome in ("transferred", "not_allowed", "unknown_target", "no_ready_pod", "caller_failed", "error"):
    TRANSFERS_TOTAL.labels(_outcome)
TRANSFER_SECONDS = Histogram(
    "voicefleet_transfer_seconds",
    "Target pod: the transfer was decided on the source pod -> this pod listens to the caller (held input "
    "replayed). Wall clocks of two pods; exact on one node.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
