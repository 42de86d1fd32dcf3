"""Prometheus metrics of retrieval in calls (the agent pod's side; the knowledge server has its own)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RETRIEVAL_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)

RETRIEVAL_SECONDS = Histogram(
    "voicefleet_retrieval_seconds",
    "One retrieval of a call (every routed base, up to the budget), by mode (tool, context).",
    ["mode"],
    buckets=RETRIEVAL_BUCKETS,
)
RETRIEVAL_EMPTY_TOTAL = Counter(
    "voicefleet_retrieval_empty_total",
    "Retrievals that gave the LLM no passage, by mode (tool, context).",
    ["mode"],
)
RETRIEVAL_BASE_FAILURES_TOTAL = Counter(
    "voicefleet_retrieval_base_failures_total",
    "A base left out of a retrieval, by base and reason (timeout, error).",
    ["base", "reason"],
)
