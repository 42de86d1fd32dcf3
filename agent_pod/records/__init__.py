"""Call records: the dual-channel recording of each call, where it is stored, and how long it is kept."""
