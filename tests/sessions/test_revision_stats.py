"""Per-revision counters as pure values: the hash they come from, windows between two reads, the
latency quantile, and the tally a pod keeps until a write succeeds."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from agent_pod.sessions.revision_stats import (
    LATENCY_BOUNDS_MS,
    RevisionCounters,
    RevisionTally,
    latency_bucket_field,
)


def counters_of(tally: RevisionTally) -> RevisionCounters:
    return RevisionCounters.from_hash({k: str(v) for k, v in tally.pending.items()})


def test_latencies_fall_in_the_bucket_whose_upper_bound_holds_them() -> None:
    assert latency_bucket_field(0) == "latency_bucket_100"
    assert latency_bucket_field(100) == "latency_bucket_100"  # le: the bound itself is inside
    assert latency_bucket_field(100.5) == "latency_bucket_200"
    assert latency_bucket_field(4999) == "latency_bucket_5000"
    assert latency_bucket_field(60_000) == "latency_bucket_inf"


def test_the_hash_becomes_cumulative_buckets_and_unknown_fields_are_ignored() -> None:
    counters = RevisionCounters.from_hash(
        {
            "turns": "7",
            "turn_errors": "1",
            "latency_bucket_100": "2",
            "latency_bucket_300": "3",
            "latency_bucket_inf": "1",
            "a_field_from_a_newer_pod": "9",
        }
    )
    assert counters.turns == 7 and counters.turn_errors == 1 and counters.sessions == 0
    buckets = dict(counters.latency_buckets)
    assert buckets[100.0] == 2 and buckets[200.0] == 2 and buckets[300.0] == 5 and buckets[5000.0] == 5
    assert buckets[math.inf] == 6 == counters.latency_count


def test_a_field_that_is_not_a_number_is_named() -> None:
    with pytest.raises(ValueError, match="'tool_calls'"):
        RevisionCounters.from_hash({"tool_calls": "many"})
    with pytest.raises(ValidationError, match="latency_buckets"):
        RevisionCounters(latency_buckets=[(100.0, 1)])


def test_a_window_is_the_difference_of_two_reads() -> None:
    tally = RevisionTally()
    tally.add("turns", 10)
    tally.observe_latency_ms(150)
    earlier = counters_of(tally)
    tally.add("turns", 5)
    tally.add("turn_errors", 2)
    tally.observe_latency_ms(150)
    tally.observe_latency_ms(900)
    window = counters_of(tally).minus(earlier)
    assert (window.turns, window.turn_errors, window.latency_count) == (5, 2, 2)
    assert dict(window.latency_buckets)[200.0] == 1 and dict(window.latency_buckets)[1000.0] == 2


def test_a_lost_hash_counts_from_zero_again() -> None:
    before = RevisionCounters.from_hash({"turns": "100", "interruptions": "4", "latency_bucket_100": "50"})
    after_loss = RevisionCounters.from_hash({"turns": "120", "interruptions": "1", "latency_bucket_100": "3"})
    assert after_loss.minus(before) == after_loss  # not 20 turns and -3 interruptions


def test_the_latency_quantile_interpolates_like_prometheus() -> None:
    counters = RevisionCounters.from_hash({"latency_bucket_100": "50", "latency_bucket_200": "50"})
    assert counters.latency_quantile_ms(0.5) == pytest.approx(100.0)
    assert counters.latency_quantile_ms(0.75) == pytest.approx(150.0)
    assert counters.latency_quantile_ms(0.95) == pytest.approx(190.0)
    slow = RevisionCounters.from_hash({"latency_bucket_100": "1", "latency_bucket_inf": "99"})
    assert slow.latency_quantile_ms(0.95) == LATENCY_BOUNDS_MS[-2]  # past the last finite bound
    assert RevisionCounters().latency_quantile_ms(0.95) is None
    with pytest.raises(ValueError, match="quantile"):
        counters.latency_quantile_ms(95)


def test_the_tally_gives_its_increments_once_and_takes_back_a_failed_write() -> None:
    tally = RevisionTally()
    tally.add("sessions")
    tally.add("tool_calls", 3)
    taken = tally.take()
    assert taken == {"sessions": 1, "tool_calls": 3}
    assert tally.take() == {}
    tally.add("tool_calls")  # counted while the write was in flight
    tally.give_back(taken)  # ... and the write failed
    assert tally.take() == {"sessions": 1, "tool_calls": 4}
