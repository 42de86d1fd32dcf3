"""A caller's audio-rate budget: audio is taken at real time plus a small burst, no faster.

A token bucket counted in seconds of audio: it refills at one second per second and holds at most
``burst_seconds``, so a client that buffers a little (or whose network bunches packets) is served,
and audio beyond it is refused. Apart from that, the budget follows how far ahead of real time the
caller is with everything it sent, refused audio included: a caller more than ``flood_seconds``
beyond its burst is flooding, not buffering. Pure: the transport passes the clock in.
"""

from __future__ import annotations

import enum

# A caller this far ahead of real time (beyond its burst) is cut off.
FLOOD_SECONDS = 30.0
# Sums of 20 ms frames in floating point: a burst of exactly N frames must fit.
_ROUNDING = 1e-9


class Verdict(enum.Enum):
    TAKE = "take"
    REFUSE_FIRST = "refuse_first"  # the first chunk refused since the caller was last within its budget
    REFUSE = "refuse"
    FLOOD = "flood"  # refused, and the caller is flood_seconds beyond its burst: cut it off


class AudioBudget:
    def __init__(self, burst_seconds: float, now: float, flood_seconds: float = FLOOD_SECONDS) -> None:
        self.burst_seconds = burst_seconds
        self.flood_seconds = flood_seconds
        self.tokens = burst_seconds  # a new stream may send its burst at once
        self.ahead_seconds = 0.0  # all audio received minus the time it covers
        self.updated = now
        self._reported = False

    def take(self, seconds: float, now: float) -> Verdict:
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        self.ahead_seconds = max(0.0, self.ahead_seconds - elapsed) + seconds
        self.tokens = min(self.burst_seconds, self.tokens + elapsed)
        if seconds <= self.tokens + _ROUNDING:
            self.tokens -= seconds
            if self.ahead_seconds <= self.burst_seconds + _ROUNDING:
                self._reported = False
            return Verdict.TAKE
        if self.ahead_seconds >= self.burst_seconds + self.flood_seconds - _ROUNDING:
            return Verdict.FLOOD
        if self._reported:
            return Verdict.REFUSE
        self._reported = True
        return Verdict.REFUSE_FIRST
