"""Rolling replacement and scale-down under live sessions; bounded load with uneven session lengths."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_pod.sessions.placement import load_bound
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for
from voicefleet_operator.deletion_cost import scale_down_order

from .harness import Caller, Channels, ChaosFleet, Stats, chaos_config, run_callers


@pytest.fixture
async def fleet(tmp_path: Path, private_redis: RedisServer) -> AsyncIterator[ChaosFleet]:
    fleet = ChaosFleet(tmp_path, private_redis, chaos_config())
    try:
        yield fleet
    finally:
        await fleet.close()


async def _true(value: bool) -> bool:
    return value


async def test_rolling_replacement_of_every_pod_drops_no_session(fleet: ChaosFleet) -> None:
    old = [await fleet.add("r1") for _ in range(3)]
    stats, channels, stop = Stats(), Channels(), asyncio.Event()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(200)]
    task = asyncio.ensure_future(
        run_callers(callers, [c.loop(stop, turns=(3, 8), think=(0.3, 0.9)) for c in callers])
    )
    try:
        await async_wait_for(lambda: _true(stats.live >= 190), timeout=120, what="~200 live sessions")
        for pod in old:  # start new, then SIGTERM old, one at a time (maxSurge 1, maxUnavailable 0)
            await fleet.add("r2")
            live_before = stats.live
            fleet.sigterm(pod)
            assert await pod.wait_exit(150) == 0, pod.log()[-3000:]
            assert stats.live >= live_before * 0.5  # callers kept talking through the drain
        stats.mark()
        await async_wait_for(
            lambda: _true(min(stats.turns_in_window.values()) >= 2), timeout=120, what="turns on the new pods"
        )
        stop.set()
        await asyncio.wait_for(task, 180)
    finally:
        stop.set()
        await channels.close()
    assert stats.dropped == []
    assert stats.sessions_completed == stats.sessions_started >= 400
    state = await fleet.state()
    assert {p.revision for p in state.pods if not p.stale} == {"r2"}


async def test_scale_down_removes_idle_pods_first_and_drops_nothing(fleet: ChaosFleet) -> None:
    for _ in range(2):
        await fleet.add()
    stats, channels = Stats(), Channels()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(40)]
    task = asyncio.ensure_future(
        run_callers(callers, [c.session(turns=25, think=(0.3, 0.6)) for c in callers])
    )
    try:
        await async_wait_for(lambda: _true(stats.live == 40), timeout=60, what="40 live sessions")
        idle = {(await fleet.add()).name for _ in range(2)}  # scale-out: pins are sticky, new pods stay idle
        state = await fleet.state()
        order = scale_down_order(state)
        assert set(order[:2]) == idle
        assert {p.name: p.live_sessions for p in state.pods if p.name in idle} == dict.fromkeys(idle, 0)
        for name in order[:2]:  # scale 4 -> 2: the idle ones go and exit at once
            fleet.sigterm(fleet.pods[name])
        for name in order[:2]:
            assert await fleet.pods[name].wait_exit(30) == 0
        busy = (await fleet.state()).pods
        victim = scale_down_order(await fleet.state())[0]
        assert next(p for p in busy if p.name == victim).load > 0  # it has calls to drain
        fleet.sigterm(fleet.pods[victim])  # scale 2 -> 1: the least busy drains its live sessions
        await asyncio.wait_for(task, 180)
        assert await fleet.pods[victim].wait_exit(60) == 0
    finally:
        await channels.close()
    assert stats.dropped == []
    assert stats.sessions_completed == 40 and stats.resumes == 0


async def test_uneven_session_lengths_keep_pod_loads_bounded(fleet: ChaosFleet) -> None:
    for _ in range(4):
        await fleet.add()
    stats, channels, stop = Stats(), Channels(), asyncio.Event()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(100 + i)) for i in range(120)]
    # lengths from 1 to 30 turns: some calls outlive many others
    task = asyncio.ensure_future(
        run_callers(callers, [c.loop(stop, turns=(1, 30), think=(0.2, 0.6)) for c in callers])
    )
    ratios: list[float] = []
    try:
        await async_wait_for(lambda: _true(stats.sessions_completed >= 150), timeout=180, what="churn")
        for _ in range(40):
            state = await fleet.state()
            loads = [p.load for p in state.pods]
            average = sum(loads) / len(loads)
            ratios.append(max(loads) / average)
            # the bound every placement respects, plus the one departure that can happen between samples
            assert max(loads) <= load_bound(sum(loads) - 1, len(loads), 0.25) + 1, loads
            await asyncio.sleep(0.25)  # sampling period, not synchronisation
        stop.set()
        await asyncio.wait_for(task, 180)
    finally:
        stop.set()
        await channels.close()
    assert stats.dropped == []
    assert statistics.fmean(ratios) <= 1.25, ratios
