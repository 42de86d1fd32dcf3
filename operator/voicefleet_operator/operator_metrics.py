"""Prometheus metrics of the operator."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "voicefleet_operator_reconciles_total",
    "Reconciles of VoiceAgents by trigger and result",
    ["trigger", "result"],
)
RECONCILE_SECONDS = Histogram(
    "voicefleet_operator_reconcile_seconds",
    "Duration of one reconcile (render + apply of the children)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OBSERVE_SECONDS = Histogram(
    "voicefleet_operator_observe_seconds",
    "Duration of one state check (indexes + Redis -> status, autoscaler, deletion costs)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ERRORS = Counter("voicefleet_operator_errors_total", "Operator errors by stage", ["stage"])
STATUS_PATCHES = Counter("voicefleet_operator_status_patches_total", "Status patches written")
SCALE_DECISIONS = Counter(
    "voicefleet_operator_autoscale_decisions_total",
    "Replica changes decided by the autoscaler",
    ["direction"],
)
DELETION_COST_PATCHES = Counter(
    "voicefleet_operator_deletion_cost_patches_total", "pod-deletion-cost annotations written"
)
MANAGED_AGENTS = Gauge("voicefleet_operator_managed_agents", "VoiceAgents the operator manages")
IS_LEADER = Gauge("voicefleet_operator_leader", "1 while this operator instance holds the leader lease")
AGENT_SESSIONS = Gauge(
    "voicefleet_agent_sessions", "Live sessions of a VoiceAgent (Redis registry)", ["namespace", "voiceagent"]
)
AGENT_CAPACITY = Gauge(
    "voicefleet_agent_capacity_sessions",
    "Session slots on ready, non-draining pods of a VoiceAgent",
    ["namespace", "voiceagent"],
)
AGENT_REPLICAS = Gauge(
    "voicefleet_agent_replicas",
    "Pods of a VoiceAgent by kind (desired, ready)",
    ["namespace", "voiceagent", "kind"],
)

ROLLOUT_WEIGHT = Gauge(
    "voicefleet_rollout_canary_weight_percent",
    "Share of new sessions placement sends to a VoiceAgent's canary revision",
    ["namespace", "voiceagent"],
)
ROLLOUT_PHASES = ("Stable", "Evaluating", "Progressing", "Paused", "Promoting", "RolledBack")
ROLLOUT_PHASE = Gauge(
    "voicefleet_rollout_phase",
    "1 for the rollout phase a VoiceAgent is in, 0 for the others",
    ["namespace", "voiceagent", "phase"],
)
ROLLOUT_MEASUREMENTS = Counter(
    "voicefleet_rollout_measurements_total",
    "Canary analysis measurements by result (successful, failed, inconclusive, no_data, error)",
    ["result"],
)
ROLLOUT_OUTCOMES = Counter(
    "voicefleet_rollout_outcomes_total",
    "Canary rollouts ended, by outcome (promoted, rolled_back)",
    ["outcome"],
)


def forget_agent(namespace: str, name: str) -> None:
    for gauge in (AGENT_SESSIONS, AGENT_CAPACITY, ROLLOUT_WEIGHT):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for kind in ("desired", "ready"):
        with contextlib.suppress(KeyError):
            AGENT_REPLICAS.remove(namespace, name, kind)
    for phase in ROLLOUT_PHASES:
        with contextlib.suppress(KeyError):
            ROLLOUT_PHASE.remove(namespace, name, phase)
