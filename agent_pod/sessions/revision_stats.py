"""Per-revision counters: what a canary analysis compares between revisions.

Every pod counts what its calls do (``RevisionTally``, fed by ``pipeline.recorder``) and adds the
increments to its revision's Redis hash about once a second (``revision_stats_writer``), so the hash
holds the revision's totals over all its pods. Counters only grow, like Prometheus counters: a reader
takes the difference of two reads (``RevisionCounters.minus``) for a window.

Hash fields: the counter names below, and ``latency_bucket_<bound>`` per latency bucket (turns whose
end of turn -> first agent audio fell in (previous bound, bound] ms; the last bound is ``inf``).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

CounterName = Literal[
    "sessions",
    "turns",
    "turn_errors",
    "tool_calls",
    "tool_failures",
    "audited_turns",
    "divergence_flags",
    "interruptions",
]
COUNTER_NAMES: tuple[CounterName, ...] = get_args(CounterName)
LATENCY_BOUNDS_MS = (100.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, math.inf)


def latency_field(bound_ms: float) -> str:
    return f"latency_bucket_{'inf' if math.isinf(bound_ms) else int(bound_ms)}"


LATENCY_FIELDS = tuple(latency_field(b) for b in LATENCY_BOUNDS_MS)


def latency_bucket_field(latency_ms: float) -> str:
    """The hash field of the bucket one response latency falls in."""
    return LATENCY_FIELDS[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)]


def _no_latencies() -> list[tuple[float, int]]:
    return [(b, 0) for b in LATENCY_BOUNDS_MS]


class RevisionCounters(BaseModel):
    """Totals of one revision since its first pod started counting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sessions: int = Field(default=0, ge=0, description="Calls started on the revision's pods.")
    turns: int = Field(default=0, ge=0, description="Agent answers to a caller turn.")
    turn_errors: int = Field(
        default=0, ge=0, description="Answers a provider failure spoiled: the LLM or TTS chain ran out."
    )
    tool_calls: int = Field(default=0, ge=0, description="Tool calls that reached a terminal state.")
    tool_failures: int = Field(
        default=0,
        ge=0,
        description="Tool calls that failed, timed out, or kept invalid arguments with no repair left.",
    )
    audited_turns: int = Field(default=0, ge=0, description="Turns whose played audio was re-transcribed.")
    divergence_flags: int = Field(default=0, ge=0, description="Audited turns flagged as divergent.")
    interruptions: int = Field(default=0, ge=0, description="Agent turns cut short by the caller.")
    latency_buckets: list[tuple[float, int]] = Field(
        default_factory=_no_latencies,
        description="(upper bound ms, turns with end of turn -> first agent audio at most that), "
        "cumulative like Prometheus' le buckets; the last bound is infinity.",
    )

    @model_validator(mode="after")
    def _buckets(self) -> RevisionCounters:
        bounds = tuple(b for b, _ in self.latency_buckets)
        if bounds != LATENCY_BOUNDS_MS:
            raise ValueError(f"latency_buckets: bounds must be {LATENCY_BOUNDS_MS}, got {bounds}")
        counts = [c for _, c in self.latency_buckets]
        if any(c < 0 for c in counts) or counts != sorted(counts):
            raise ValueError(f"latency_buckets: counts must be cumulative and not negative, got {counts}")
        return self

    @property
    def latency_count(self) -> int:
        """Turns with a measured response latency."""
        return self.latency_buckets[-1][1]

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> RevisionCounters:
        """From the revision's Redis hash (fields this version does not know are ignored)."""
        values: dict[str, int] = {}
        for name in (*COUNTER_NAMES, *LATENCY_FIELDS):
            try:
                values[name] = int(raw.get(name, "0"))
            except ValueError:
                raise ValueError(f"field {name!r} is not an integer: {raw[name]!r}") from None
        running = 0
        buckets: list[tuple[float, int]] = []
        for bound, name in zip(LATENCY_BOUNDS_MS, LATENCY_FIELDS, strict=True):
            running += values[name]
            buckets.append((bound, running))
        return cls(**{name: values[name] for name in COUNTER_NAMES}, latency_buckets=buckets)

    def minus(self, earlier: RevisionCounters) -> RevisionCounters:
        """What was counted since ``earlier``. Every field lives in one hash, so a field found lower than
        before means the hash was lost and counting began again: then all of it is new, as Prometheus'
        rate() treats a counter reset."""
        if any(now < then for now, then in zip(self._values(), earlier._values(), strict=True)):
            return self
        return RevisionCounters(
            **{name: getattr(self, name) - getattr(earlier, name) for name in COUNTER_NAMES},
            latency_buckets=[
                (bound, now - then)
                for (bound, now), (_, then) in zip(self.latency_buckets, earlier.latency_buckets, strict=True)
            ],
        )

    def _values(self) -> list[int]:
        return [*(getattr(self, name) for name in COUNTER_NAMES), *(c for _, c in self.latency_buckets)]

    def latency_quantile_ms(self, q: float) -> float | None:
        """The q-quantile of the response latency, interpolated within its bucket as Prometheus'
        histogram_quantile does (the highest finite bound when it falls in the last bucket); None
        without a measured turn."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q}")
        total = self.latency_count
        if total == 0:
            return None
        rank = q * total
        lower, below = 0.0, 0
        for bound, count in self.latency_buckets:
            if count >= rank and count > below:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower


class RevisionTally:
    """This pod's increments not yet added to its revision's hash (pure: the writer does the I/O)."""

    def __init__(self) -> None:
        self._pending: Counter[str] = Counter()

    def add(self, name: CounterName, n: int = 1) -> None:
        self._pending[name] += n

    def observe_latency_ms(self, latency_ms: float) -> None:
        self._pending[latency_bucket_field(latency_ms)] += 1

    @property
    def pending(self) -> dict[str, int]:
        return dict(self._pending)

    def take(self) -> dict[str, int]:
        """The increments so far, which are the caller's to write now."""
        taken, self._pending = dict(self._pending), Counter()
        return taken

    def give_back(self, increments: Mapping[str, int]) -> None:
        """A write that did not happen: its increments go out with the next one."""
        self._pending.update(increments)
