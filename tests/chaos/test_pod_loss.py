"""SIGKILL of a pod with live sessions: every caller resumes on another pod with its history."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

from .harness import Caller, Channels, ChaosFleet, Stats, chaos_config, run_callers


@pytest.fixture
async def fleet(tmp_path: Path, private_redis: RedisServer) -> AsyncIterator[ChaosFleet]:
    fleet = ChaosFleet(tmp_path, private_redis, chaos_config())
    try:
        yield fleet
    finally:
        await fleet.close()


async def test_sigkill_of_a_pod_resumes_every_session_elsewhere_with_history(fleet: ChaosFleet) -> None:
    for _ in range(3):
        await fleet.add()
    stats, channels = Stats(), Channels()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(60)]
    task = asyncio.ensure_future(
        run_callers(callers, [c.session(turns=14, think=(0.2, 0.5)) for c in callers])
    )
    try:
        await async_wait_for(
            lambda: _true(stats.live == 60 and min(stats.turns_in_window.values()) >= 2),
            timeout=120,
            what="60 live sessions with 2 turns each",
        )
        state = await fleet.state()
        victim_name = max(state.pods, key=lambda p: p.load).name
        victim_load = max(p.load for p in state.pods)
        assert victim_load > 0
        await fleet.sigkill(fleet.pods[victim_name])
        await asyncio.wait_for(task, 240)
    finally:
        await channels.close()
    assert stats.dropped == []
    assert stats.sessions_completed == 60
    assert stats.resumes >= victim_load
    assert len(stats.resume_seconds) >= victim_load
    after = await fleet.state()
    # the first resume found the pod unreachable and took it out of placement at once
    assert {p.name for p in after.pods if not p.stale and p.state == "ready"} == set(fleet.pods) - {
        victim_name
    }


async def _true(value: bool) -> bool:
    return value
