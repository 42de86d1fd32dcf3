"""Redis stopped for 30 s under live sessions, then restarted empty: no live session is dropped,
new calls are served meanwhile, and the fleet's state is back in Redis afterwards."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from agent_pod.sessions.keys import AgentKeys
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

from .harness import Caller, Channels, ChaosFleet, Stats, chaos_config, run_callers

OUTAGE_SECONDS = 30.0


@pytest.fixture
async def fleet(tmp_path: Path, private_redis: RedisServer) -> AsyncIterator[ChaosFleet]:
    fleet = ChaosFleet(tmp_path, private_redis, chaos_config())
    try:
        yield fleet
    finally:
        if not private_redis.running:
            private_redis.start()
        await fleet.close()


async def _true(value: bool) -> bool:
    return value


async def test_redis_down_30s_drops_no_live_session(fleet: ChaosFleet) -> None:
    for _ in range(3):
        await fleet.add()
    stats, channels, stop = Stats(), Channels(), asyncio.Event()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(60)]
    task = asyncio.ensure_future(
        run_callers(callers, [c.loop(stop, turns=(5, 40), think=(0.3, 0.8)) for c in callers])
    )
    try:
        await async_wait_for(lambda: _true(stats.live == 60), timeout=120, what="60 live sessions")
        fleet.redis.stop()
        down_at = time.monotonic()
        stats.mark()
        started_before = stats.sessions_started
        # the outage lasts its 30 s and every caller keeps being answered meanwhile
        await async_wait_for(
            lambda: _true(
                time.monotonic() - down_at >= OUTAGE_SECONDS and min(stats.turns_in_window.values()) >= 5
            ),
            timeout=OUTAGE_SECONDS + 120,
            what="30 s of outage with every caller talking",
        )
        assert stats.sessions_started > started_before  # new calls were placed without Redis
        fleet.redis.start()  # empty: the pods write their state back
        await async_wait_for(
            lambda: _resynced(fleet, stats), timeout=60, what="pods re-registered with their live sessions"
        )
        stop.set()
        await asyncio.wait_for(task, 180)
    finally:
        stop.set()
        await channels.close()
    assert stats.dropped == []
    assert stats.sessions_completed == stats.sessions_started


async def _resynced(fleet: ChaosFleet, stats: Stats) -> bool:
    """Every pod is registered and ready again, and every call that stayed live is pinned to its pod."""
    state = await fleet.state()
    if len([p for p in state.pods if not p.stale and p.state == "ready"]) != 3:
        return False
    before = dict(stats.current)
    redis = Redis.from_url(fleet.redis.url, decode_responses=True)
    try:
        keys = AgentKeys(fleet.config.namespace, fleet.config.agent)
        pins = {sid: await redis.hget(keys.pin(sid), "pod") for sid in before}
    finally:
        await redis.aclose()
    steady = {sid: pod for sid, pod in before.items() if stats.current.get(sid) == pod}
    return len(steady) > 0 and all(pins[sid] == pod for sid, pod in steady.items())
