"""Call records: the dual-channel recording of each call, where it is stored and how long it is kept;
the hash-chained, signed audit trail beside it; redaction of what they store."""
