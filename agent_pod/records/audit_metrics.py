"""Prometheus metrics of the call audit trail (docs/audit.md)."""

from __future__ import annotations

from prometheus_client import Counter

AUDIT_ENTRIES_TOTAL = Counter(
    "voicefleet_audit_entries_total",
    "Audit log entries written to storage, by type (call_started, turn, recording, call_ended).",
    ["type"],
)
AUDIT_WRITE_FAILURES_TOTAL = Counter(
    "voicefleet_audit_write_failures_total",
    "Failed writes of audit entries or heads (each is retried; the call goes on).",
)
AUDIT_ENTRIES_DROPPED_TOTAL = Counter(
    "voicefleet_audit_entries_dropped_total",
    "Audit entries never written: storage still failing when the call's log was closed, or appended after.",
)
AUDIT_REDACTIONS_TOTAL = Counter(
    "voicefleet_audit_redactions_total",
    "PII spans replaced in stored audit text, by kind (card, phone, email).",
    ["kind"],
)
AUDIT_RETENTION_DELETED_TOTAL = Counter(
    "voicefleet_audit_retention_deleted_total",
    "Calls whose audit logs the retention sweep deleted (audit.retentionDays).",
)
