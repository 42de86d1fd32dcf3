"""The Sentinel-managed master SIGKILLed under 100 live calls: none is dropped, and new sessions are
placed through Redis again within seconds of the failover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.redis_ha import SentinelGroup

from .failover import run_failover
from .harness import ChaosFleet, chaos_config

CALLS = 100


@pytest.fixture
async def fleet(tmp_path: Path, sentinel_group: SentinelGroup) -> AsyncIterator[ChaosFleet[SentinelGroup]]:
    fleet = ChaosFleet(tmp_path, sentinel_group, chaos_config())
    try:
        yield fleet
    finally:
        await fleet.close()


async def test_master_killed_under_100_calls_drops_none(fleet: ChaosFleet[SentinelGroup]) -> None:
    for _ in range(3):
        await fleet.add()
    result = await run_failover(fleet, CALLS)
    stats = result.stats
    assert stats.dropped == []
    assert stats.sessions_completed == stats.sessions_started
    # Sentinel needs its 1 s down-after plus an election; placement follows within a few seconds
    assert result.placement_gap_seconds < result.failover_seconds + 5, result.probes[-5:]
    print(
        f"failover {result.failover_seconds:.2f} s, placement gap {result.placement_gap_seconds:.2f} s, "
        f"{result.local_grants} local grants and {result.refused} refusals meanwhile"
    )
