"""Prometheus metrics of call recordings (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDINGS_ACTIVE = Gauge("voicefleet_recordings_active", "Calls being recorded on this pod.")
BYTES_TOTAL = Counter(
    "voicefleet_recording_bytes_total", "Bytes of WAV audio written to recording files (both channels)."
)
FLUSH_SECONDS = Histogram(
    "voicefleet_recording_flush_seconds",
    "Time of one flush in the writer thread: align, resample, interleave, write, patch the header.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
UPLOADS_TOTAL = Counter(
    "voicefleet_recording_uploads_total", "Objects uploaded to the recording bucket.", ["kind"]
)
UPLOAD_FAILURES_TOTAL = Counter(
    "voicefleet_recording_upload_failures_total",
    "Failed upload attempts to the recording bucket (each is retried with backoff).",
    ["kind"],
)
UPLOAD_RETRIES_TOTAL = Counter(
    "voicefleet_recording_upload_retries_total", "Upload attempts that follow a failed one.", ["kind"]
)
UPLOAD_BACKLOG = Gauge(
    "voicefleet_recording_upload_backlog_segments", "Flushed segments kept locally until uploaded."
)
RETENTION_DELETED_TOTAL = Counter(
    "voicefleet_recording_retention_deleted_total",
    "Recordings (files or objects) deleted by the retention sweep.",
    ["storage"],
)
