"""Capped exponential backoff of the call records' writers (recording uploads, audit log writes)."""

from __future__ import annotations


def backoff(attempt: int, first: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``first``, doubling, at most ``cap``."""
    return min(cap, first * 2 ** (attempt - 1))
