"""Prometheus metrics of memory and context assembly (next to pipeline_metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ..pipeline_metrics import LATENCY_BUCKETS

TOKEN_BUCKETS = (250, 500, 1000, 2000, 4000, 6000, 8000, 12000, 16000, 32000, 64000, 128000)

CONTEXT_TOKENS = Histogram(
    "voicefleet_llm_context_tokens",
    "Estimated tokens of the context assembled for a turn, or for a flow node taking over one (tokens.py).",
    buckets=TOKEN_BUCKETS,
)
CONTEXT_TURNS_LEFT_OUT_TOTAL = Counter(
    "voicefleet_context_turns_left_out_total",
    "Older turns not sent to the LLM because the context budget was full (not yet summarised).",
)
SUMMARIES_TOTAL = Counter(
    "voicefleet_context_summaries_total", "Summaries of older turns, by outcome (made, failed).", ["outcome"]
)
MEMORY_WRITES_TOTAL = Counter(
    "voicefleet_memory_writes_total",
    "Writes to memory blocks by source (tool, extraction, lookup) and outcome (written, refused).",
    ["source", "outcome"],
)
MEMORY_EXTRACTIONS_TOTAL = Counter(
    "voicefleet_memory_extractions_total",
    "LLM memory extractions after a turn, by outcome (ok, failed).",
    ["outcome"],
)
MEMORY_WRITE_LAG_SECONDS = Histogram(
    "voicefleet_memory_write_lag_seconds",
    "End of a turn -> its extracted memory written and in the call's snapshot.",
    buckets=LATENCY_BUCKETS,
)
MEMORY_LOOKUPS_TOTAL = Counter(
    "voicefleet_memory_lookups_total",
    "Background tool lookups of the lookup agent, by outcome (ok, failed).",
    ["outcome"],
)
