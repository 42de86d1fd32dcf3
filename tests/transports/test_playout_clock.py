"""The pod-wide playout clock."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from agent_pod.transports.playout_clock import PlayoutClock


def _lateness_count() -> float:
    return REGISTRY.get_sample_value("voicefleet_output_frame_lateness_seconds_count") or 0.0


async def test_waiters_wake_together_on_increasing_ticks():
    clock = PlayoutClock()
    before = _lateness_count()
    await clock.start()
    try:
        first = await asyncio.gather(*(clock.tick() for _ in range(20)))
        assert len(set(first)) == 1  # every waiter woke on the same tick
        second = await clock.tick()
        assert second > first[0]
        # A cancelled waiter does not disturb the others.
        waiter = asyncio.create_task(clock.tick())
        other = asyncio.create_task(clock.tick())
        await asyncio.sleep(0)
        waiter.cancel()
        assert await other > second
    finally:
        await clock.stop()
    assert _lateness_count() >= before + 2


async def test_ticks_track_wall_time_without_drift():
    clock = PlayoutClock(frame_ms=20)
    await clock.start()
    try:
        loop = asyncio.get_running_loop()
        start_tick, start = await clock.tick(), loop.time()
        for _ in range(25):
            last = await clock.tick()
        elapsed = loop.time() - start
    finally:
        await clock.stop()
    # Tick indices count 20 ms slots of wall time (skipped ticks included), so they never drift.
    assert abs((last - start_tick) * 0.020 - elapsed) < 0.1


async def test_tick_requires_a_running_clock():
    clock = PlayoutClock()
    with pytest.raises(RuntimeError, match="not running"):
        await clock.tick()
    await clock.start()
    await clock.start()  # idempotent
    await clock.stop()
    await clock.stop()
    with pytest.raises(RuntimeError):
        await clock.tick()
