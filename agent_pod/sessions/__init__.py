"""Session placement, pinning and conversation snapshots (Redis)."""
