"""Prometheus metrics of the knowledge server (the operator's alerts and dashboard read these names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .retrieval_metrics import RETRIEVAL_BUCKETS

DOCUMENTS = Gauge("voicefleet_kb_documents", "Live documents of a source.", ["kb", "source"])
CHUNKS = Gauge("voicefleet_kb_chunks", "Live chunks of a source.", ["kb", "source"])
INDEX_BYTES = Gauge("voicefleet_kb_index_bytes", "Bytes the store occupies.", ["kb"])
INGESTION_LAG_SECONDS = Gauge(
    "voicefleet_kb_ingestion_lag_seconds",
    "Seconds since the source's last successful sync (since the server's start before the first).",
    ["kb", "source"],
)
SOURCE_STALE = Gauge(
    "voicefleet_kb_source_stale",
    "1 when the source, or some of its documents, is older than its maxAgeSeconds.",
    ["kb", "source"],
)
SYNC_TOTAL = Counter(
    "voicefleet_kb_sync_total", "Source syncs by outcome (ok, partial, failed).", ["kb", "source", "outcome"]
)
SEARCH_SECONDS = Histogram(
    "voicefleet_kb_search_seconds",
    "One search: embedding the query and the store's search.",
    ["kb"],
    buckets=RETRIEVAL_BUCKETS,
)
SEARCHES_TOTAL = Counter("voicefleet_kb_searches_total", "Searches answered.", ["kb"])
SEARCH_EMPTY_TOTAL = Counter("voicefleet_kb_search_empty_total", "Searches that found nothing.", ["kb"])
COMPACTION_SECONDS = Histogram(
    "voicefleet_kb_compaction_seconds",
    "Store compactions (vacuum) that ran.",
    ["kb"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
COMPACTION_FREED_BYTES_TOTAL = Counter(
    "voicefleet_kb_compaction_freed_bytes_total", "Bytes compactions gave back.", ["kb"]
)
LAST_COMPACTION_TIMESTAMP_SECONDS = Gauge(
    "voicefleet_kb_last_compaction_timestamp_seconds", "Unix time of the last compaction that ran.", ["kb"]
)
