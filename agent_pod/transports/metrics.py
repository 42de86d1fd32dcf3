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
