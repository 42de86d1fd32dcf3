"""The Sentinel failover scenario, shared by the chaos test and bench.redis_failover.

Real pods on a Sentinel group (1 master, replicas, 3 sentinels with a 1 s down-after), callers
talking turns on every live call. The master is SIGKILLed; a prober keeps asking SessionService for
new sessions and counts one as placed again when its pin is already in Redis when the grant comes
back (a pod serving from local state while Redis is away grants without writing a pin). Measured
from the kill: when the sentinels named the new master, the first placement through Redis (the
placement gap), and when every pod was back on Redis.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import grpc

from agent_pod.sessions.keys import AgentKeys
from tests.support.redis_ha import SentinelGroup
from tests.support.wait import async_wait_for
from voicefleet.v1 import session_pb2, session_pb2_grpc

from .harness import Caller, Channels, ChaosFleet, Stats, redis_client, run_callers

PROBE_INTERVAL_SECONDS = 0.1


@dataclass
class FailoverResult:
    calls: int
    stats: Stats
    failover_seconds: float  # kill -> the sentinels name a new master
    placement_gap_seconds: float  # kill -> first new session placed through Redis
    local_grants: int  # probe sessions granted from a pod's local state meanwhile
    refused: int  # probe creates refused (503) meanwhile
    probes: list[tuple[float, str]] = field(default_factory=list)  # (seconds after the kill, outcome)


async def _true(value: bool) -> bool:
    return value


async def _placed_through_redis(fleet: ChaosFleet[SentinelGroup], channels: Channels, keys: AgentKeys) -> str:
    stub = session_pb2_grpc.SessionServiceStub(channels.get(random.choice(fleet.endpoints)))
    try:
        grant = await stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return f"refused {exc.code().name}"
    redis = redis_client(fleet.redis)
    try:
        pinned = await redis.exists(keys.pin(grant.session_id))
    except Exception:
        return "local"  # Redis itself is not reachable yet
    finally:
        await redis.aclose()
    return "placed" if pinned else "local"


async def run_failover(
    fleet: ChaosFleet[SentinelGroup], calls: int, after_seconds: float = 10.0
) -> FailoverResult:
    """``calls`` live calls talking; the master killed; the calls go on ``after_seconds`` past the
    placement coming back, then wrap up."""
    stats, channels, stop = Stats(), Channels(), asyncio.Event()
    callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(calls)]
    task = asyncio.ensure_future(
        run_callers(callers, [c.loop(stop, turns=(5, 40), think=(0.3, 0.8)) for c in callers])
    )
    keys = AgentKeys(fleet.config.namespace, fleet.config.agent)
    try:
        await async_wait_for(
            lambda: _true(stats.live == calls and min(stats.turns_in_window.values()) >= 2),
            timeout=180,
            what=f"{calls} live calls",
        )
        old = fleet.redis.master_address()
        await asyncio.to_thread(fleet.redis.kill_master)
        killed = time.monotonic()
        stats.mark()
        failover = asyncio.ensure_future(asyncio.to_thread(fleet.redis.wait_failover, old, 60.0))
        probes: list[tuple[float, str]] = []
        while True:
            outcome = await _placed_through_redis(fleet, channels, keys)
            probes.append((time.monotonic() - killed, outcome))
            if outcome == "placed":
                break
            if time.monotonic() - killed > 60:
                raise AssertionError(f"no placement through Redis within 60 s of the kill: {probes[-5:]}")
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        failed_over = await failover
        # every call keeps talking after the failover
        stats.mark()
        await async_wait_for(
            lambda: _true(min(stats.turns_in_window.values()) >= 3),
            timeout=after_seconds + 60,
            what="every caller answered after the failover",
        )
        stop.set()
        await asyncio.wait_for(task, 240)
    finally:
        stop.set()
        await channels.close()
    return FailoverResult(
        calls=calls,
        stats=stats,
        failover_seconds=failed_over - killed,
        placement_gap_seconds=probes[-1][0],
        local_grants=sum(1 for _, o in probes if o == "local"),
        refused=sum(1 for _, o in probes if o.startswith("refused")),
        probes=probes,
    )
