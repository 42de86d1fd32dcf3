"""Call records: what a call leaves behind for compliance (audit trail, redaction)."""
