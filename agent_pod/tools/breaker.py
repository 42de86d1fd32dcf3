"""A per-tool circuit breaker as a pure state machine: the caller passes the time in.

closed --(N consecutive failures)--> open --(cooldown over)--> half-open: one trial call;
its success closes the breaker, its failure opens it again for another cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class Breaker:
    failure_threshold: int
    cooldown_seconds: float
    state: BreakerState = "closed"
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    trial_running: bool = False

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open only one trial runs at a time."""
        if self.state == "open":
            if now - self.opened_at < self.cooldown_seconds:
                return False
            self.state, self.trial_running = "half_open", False
        if self.state == "half_open":
            if self.trial_running:
                return False
            self.trial_running = True
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.cooldown_seconds - (now - self.opened_at))

    def record(self, ok: bool, now: float) -> None:
        """The outcome of a call ``allow`` let through."""
        self.trial_running = False
        if ok:
            self.state, self.failures = "closed", 0
            return
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            self.state, self.opened_at = "open", now

    def release(self) -> None:
        """A call let through ended without telling anything about the tool's health (cancelled)."""
        self.trial_running = False
