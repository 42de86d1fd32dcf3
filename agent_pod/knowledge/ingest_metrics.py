"""Prometheus metrics of ingestion (beside the server's gauges of documents, chunks, lag and staleness)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DOCUMENTS_INDEXED_TOTAL = Counter(
    "voicefleet_kb_documents_indexed_total",
    "New or changed documents chunked, embedded and written (unchanged ones are skipped).",
    ["kb", "source"],
)
DOCUMENTS_TOMBSTONED_TOTAL = Counter(
    "voicefleet_kb_documents_tombstoned_total",
    "Documents removed because their source no longer has them.",
    ["kb", "source"],
)
CHUNKS_EMBEDDED_TOTAL = Counter(
    "voicefleet_kb_chunks_embedded_total", "Chunks embedded, by syncs and re-embeds.", ["kb", "model"]
)
INGEST_ERRORS_TOTAL = Counter(
    "voicefleet_kb_ingest_errors_total",
    "Source and document problems met while syncing (Unreachable, TooLarge, NotText, Duplicate, ...).",
    ["kb", "source", "reason"],
)
EMBED_SECONDS = Histogram(
    "voicefleet_kb_embed_seconds",
    "Time to embed one batch of chunks.",
    ["kb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
