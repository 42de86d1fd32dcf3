"""The placement Lua script on a real Redis: same answers as the pure function, bound and
capacity held under concurrent creates from several clients, pins sticky, drain honoured."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections import Counter
from typing import Any

import pytest

from agent_pod.sessions import scripts as scripts_module
from agent_pod.sessions.directory import AdmissionError
from agent_pod.sessions.fleet_state import read_fleet
from agent_pod.sessions.placement import PodLoad, place, revision_bucket, ring_order
from agent_pod.sessions.records import PodRecord, PodState
from agent_pod.sessions.script_keys import place_keys
from agent_pod.sessions.scripts import Scripts
from tests.support.redis import RedisServer

from .helpers import Fleet


async def test_lua_placement_matches_the_pure_function(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    redis = fleet.client()
    scripts = Scripts(redis)
    keys = fleet.keys
    rng = random.Random(5)
    try:
        for _ in range(150):
            await redis.delete(*[k async for k in redis.scan_iter(match=keys.match_all)] or ["none"])
            seconds, _micro = await redis.time()
            now_ms = int(seconds) * 1000
            pods: list[PodLoad] = []
            for i in range(rng.randint(1, 8)):
                states: list[PodState] = ["ready", "ready", "ready", "draining", "lost"]
                state = rng.choice(states)
                fresh = rng.random() > 0.15
                record = PodRecord(
                    name=f"pod-{i}",
                    capacity=rng.randint(1, 30),
                    state=state,
                    heartbeat_ms=now_ms if fresh else now_ms - 60_000,
                )
                await redis.hset(keys.pod(record.name), mapping=dict[Any, Any](record.to_mapping()))
                await redis.sadd(keys.pods, record.name)
                load = rng.randint(0, 25)
                if load:
                    await redis.zadd(keys.load(record.name), {f"x{j}": now_ms + 60_000 for j in range(load)})
                pods.append(PodLoad(record.name, load, record.capacity, state == "ready" and fresh))
            sid = uuid.uuid4().hex
            expected = place(sid, pods, 0.25)
            order = ring_order(sid, [p.name for p in pods])
            args = [sid, "0.25", 10_000, 30_000, 60_000, "th", "", revision_bucket(sid), *order]
            result = await scripts.place(keys=place_keys(keys, sid, "", order), args=args)
            got = result[1] if result[0] == "placed" else None
            assert got == expected, (pods, result)
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=keys.match_all)] or ["none"])
        await redis.aclose()


async def test_concurrent_creates_from_several_pods_never_overshoot_the_bound(
    redis_server: RedisServer,
) -> None:
    fleet = Fleet(redis_server.url)
    for i in range(4):
        await fleet.add(f"pod-{i}", capacity=1000)
    try:
        apis = list(fleet.pods.values())
        grants = await asyncio.gather(*(apis[i % 4].create({}) for i in range(400)))
        per_pod = Counter(g.pod for g in grants)
        assert sum(per_pod.values()) == 400
        assert max(per_pod.values()) <= math.ceil(1.25 * 400 / 4), per_pod
        state = await read_fleet(fleet.client(), fleet.keys.namespace, fleet.keys.agent)
        assert {p.name: p.load for p in state.pods} == dict(per_pod)
    finally:
        await fleet.close()


async def test_concurrent_creates_never_exceed_capacity(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    for i in range(3):
        await fleet.add(f"pod-{i}", capacity=20)
    try:
        apis = list(fleet.pods.values())
        results = await asyncio.gather(*(apis[i % 3].create({}) for i in range(100)), return_exceptions=True)
        grants = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, AdmissionError)]
        assert len(grants) == 60 and len(refused) == 40
        assert all(e.code == "unavailable" and e.retry_after_seconds for e in refused)
        assert set(Counter(g.pod for g in grants).values()) == {20}
    finally:
        await fleet.close()


async def test_adding_pods_moves_no_live_session(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    for i in range(3):
        await fleet.add(f"pod-{i}")
    try:
        grants = [await fleet.pods["pod-0"].create({}) for _ in range(30)]
        for g in grants:
            await fleet.pods[g.pod].admit(g.session_id, g.resume_token, "p")
        for i in range(3, 6):
            await fleet.add(f"pod-{i}")
        for g in grants:
            again = await fleet.pods["pod-5"].resume(g.session_id, g.resume_token)
            assert again.pod == g.pod
        # new sessions do go to the new pods (bounded load pushes them there)
        later = [await fleet.pods["pod-1"].create({}) for _ in range(30)]
        assert {g.pod for g in later} & {"pod-3", "pod-4", "pod-5"}
    finally:
        await fleet.close()


async def test_a_draining_pod_takes_no_new_session(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    for i in range(3):
        await fleet.add(f"pod-{i}")
    try:
        await fleet.pods["pod-1"].drain()
        grants = [await fleet.pods["pod-1"].create({}) for _ in range(60)]
        assert "pod-1" not in {g.pod for g in grants}
        with pytest.raises(AdmissionError) as refused:
            await fleet.pods["pod-1"].admit("", None, "p")
        assert refused.value.code == "unavailable" and "draining" in str(refused.value)
        state = await read_fleet(fleet.client(), fleet.keys.namespace, fleet.keys.agent)
        assert {p.name: p.state for p in state.pods}["pod-1"] == "draining"
        assert state.draining_pods == 1 and state.ready_pods == 2
    finally:
        await fleet.close()


async def test_no_ready_pod_refuses_with_retry_after(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    await fleet.add("only")
    try:
        await fleet.pods["only"].drain()
        with pytest.raises(AdmissionError) as refused:
            await fleet.pods["only"].create({})
        assert refused.value.code == "unavailable" and refused.value.retry_after_seconds
    finally:
        await fleet.close()


def test_no_script_builds_a_key_itself() -> None:
    """A Redis Cluster routes a script by its KEYS: every key must come from there, never from Lua."""
    for name in (
        "PLACE",
        "CLAIM",
        "SNAPSHOTS",
        "POD_AND_TIME",
        "RELEASE",
        "MIGRATE",
        "ABORT_MIGRATION",
        "HEARTBEAT",
        "MARK_LOST",
    ):
        source = getattr(scripts_module, name)
        assert "..'" not in source.replace(" ", ""), name  # no string concatenation into a key name
        assert "prefix" not in source, name


async def test_a_pod_registered_after_the_callers_list_is_still_placed_on(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    try:
        a = await fleet.add("pod-a", capacity=1)
        await a.create({})  # pod-a is full now
        await fleet.add("pod-b", capacity=5)
        a.registry.pod_names = ["pod-a"]  # pod-a's list predates pod-b
        grant = await a.create({})
        assert grant.pod == "pod-b"
    finally:
        await fleet.close()
