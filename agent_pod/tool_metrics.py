"""Prometheus metrics of the tool orchestration layer (docs/tools.md), beside pipeline_metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TOOL_AUDIT_RECORDS_TOTAL = Counter(
    "voicefleet_tool_audit_records_total",
    "Tool call audit records written, by tool and outcome (succeeded, replayed, failed, timed_out, "
    "cancelled, invalid_arguments, awaiting_confirmation, declined, circuit_open, concurrency_limited, "
    "duplicate_in_flight).",
    ["tool", "outcome"],
)
TOOL_CALL_SECONDS = Histogram(
    "voicefleet_tool_call_seconds",
    "Latency of executed tool calls, retries included (replays and refusals excluded).",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOOL_IDEMPOTENT_REPLAYS_TOTAL = Counter(
    "voicefleet_tool_idempotent_replays_total",
    "Side-effecting tool calls answered from the stored result of an earlier identical call, unsent.",
    ["tool"],
)
TOOL_IDEMPOTENCY_STORE_ERRORS_TOTAL = Counter(
    "voicefleet_tool_idempotency_store_errors_total",
    "Redis errors of the idempotency store; the pod falls back to its own memory for that call.",
)
TOOL_BREAKER_STATE = Gauge(
    "voicefleet_tool_breaker_state",
    "Circuit breaker of each tool on this pod: 0 closed, 1 half-open, 2 open.",
    ["tool"],
)
TOOL_BREAKER_REJECTIONS_TOTAL = Counter(
    "voicefleet_tool_breaker_rejections_total",
    "Tool calls refused without a request because the tool's breaker was open (or its trial running).",
    ["tool"],
)
TOOL_CONCURRENCY_REJECTIONS_TOTAL = Counter(
    "voicefleet_tool_concurrency_rejections_total",
    "Tool calls refused after waiting queueTimeoutSeconds for a slot under the tool's concurrency limit.",
    ["tool"],
)
TOOL_CONFIRMATIONS_TOTAL = Counter(
    "voicefleet_tool_confirmations_total",
    "Caller answers to proposed sensitive tool calls, by decision (yes, no, unclear).",
    ["decision"],
)
MCP_LIST_FAILURES_TOTAL = Counter(
    "voicefleet_mcp_list_failures_total",
    "Failed attempts to list an MCP server's tools (the pod retries; calls go on without them).",
    ["server"],
)
