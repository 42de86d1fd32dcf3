"""Prometheus metrics of flows (next to agent_pod/pipeline_metrics.py, same registry and buckets)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ..pipeline_metrics import LATENCY_BUCKETS

FLOW_TRANSITIONS_TOTAL = Counter(
    "voicefleet_flow_transitions_total",
    "Flow transitions committed, by node left and node entered.",
    ["from_node", "to_node"],
)
FLOW_HANDOFF_SECONDS = Histogram(
    "voicefleet_flow_handoff_seconds",
    "Flow transition decided -> first audio frame played after it (or the new node's first LLM token "
    "when nothing is spoken).",
    buckets=LATENCY_BUCKETS,
)
FLOW_SUMMARY_FAILURES_TOTAL = Counter(
    "voicefleet_flow_summary_failures_total",
    "Handoff summaries the node's LLM could not write (the node got the full history instead).",
)
