"""Weighted revision choice in the PLACE script, on a real Redis: the script and the pure rule agree,
pods of two revisions share new sessions by the rollout's weight, a full canary never refuses a
call, live calls keep their pod and revision whatever the weight does."""

from __future__ import annotations

import random
import uuid
from typing import Any

from prometheus_client import REGISTRY

from agent_pod.sessions.placement import PodLoad, choose_revision, revision_bucket, ring_order
from agent_pod.sessions.records import PodRecord, PodState, Rollout
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.sessions.rollout_store import clear_rollout, read_rollout, write_rollout
from agent_pod.sessions.script_keys import place_keys
from agent_pod.sessions.scripts import Scripts
from tests.support.redis import RedisServer

from .helpers import Fleet

STABLE, CANARY = "rev-stable", "rev-canary"


async def test_lua_weighted_placement_matches_the_pure_rule(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    redis = fleet.client()
    scripts = Scripts(redis)
    keys = fleet.keys
    rng = random.Random(29)
    sides_seen: set[tuple[str, str]] = set()
    try:
        for _ in range(300):
            await redis.delete(*[k async for k in redis.scan_iter(match=keys.match_all)] or ["none"])
            seconds, _micro = await redis.time()
            now_ms = int(seconds) * 1000
            pods: list[PodLoad] = []
            for i in range(rng.randint(1, 8)):
                state: PodState = rng.choice(["ready", "ready", "ready", "draining", "lost"])
                fresh = rng.random() > 0.15
                record = PodRecord(
                    name=f"pod-{i}",
                    capacity=rng.randint(1, 12),
                    state=state,
                    heartbeat_ms=now_ms if fresh else now_ms - 60_000,
                    revision=rng.choice([STABLE, "rev-older", CANARY]),
                )
                await redis.hset(keys.pod(record.name), mapping=dict[Any, Any](record.to_mapping()))
                await redis.sadd(keys.pods, record.name)
                load = rng.randint(0, 12)
                if load:
                    await redis.zadd(keys.load(record.name), {f"x{j}": now_ms + 60_000 for j in range(load)})
                pods.append(
                    PodLoad(record.name, load, record.capacity, state == "ready" and fresh, record.revision)
                )
            rollout = rng.choice([None, Rollout(canary=CANARY, weight=rng.choice([0, 10, 50, 100]))])
            if rollout is not None:
                await write_rollout(redis, keys, rollout)
            sid = uuid.uuid4().hex
            owner, pinned = "", None
            if rng.random() < 0.3:  # a re-placement: the pin names a pod (gone) and its revision
                owner, pinned = "pod-gone", rng.choice([STABLE, CANARY, ""])
                pin: dict[Any, Any] = {"pod": owner, "revision": pinned, "token_hash": "th"}
                await redis.hset(keys.pin(sid), mapping=pin)
            bucket = revision_bucket(sid)
            order = ring_order(sid, [p.name for p in pods])
            by_name = {p.name: p for p in pods}
            expected = choose_revision([by_name[n] for n in order], 0.25, rollout, bucket, pinned)
            args = [sid, "0.25", 10_000, 30_000, 60_000, "th", owner, bucket, *order]
            result = await scripts.place(keys=place_keys(keys, sid, owner, order), args=args)
            if expected.pod is None:
                assert result[0] == "full", (pods, rollout, result)
                continue
            assert result[0] == "placed", (pods, rollout, result)
            got = (result[1], result[6] or None, result[7] == "1")
            assert got == (expected.pod, expected.side, expected.fallback), (pods, rollout, pinned, result)
            sides_seen.add((result[6], result[7]))
        # every branch was taken: no rollout, each side, and fallbacks both ways
        assert sides_seen == {("", "0"), ("canary", "0"), ("stable", "0"), ("canary", "1"), ("stable", "1")}
    finally:
        await redis.delete(*[k async for k in redis.scan_iter(match=keys.match_all)] or ["none"])
        await redis.aclose()


async def two_revisions(fleet: Fleet, capacity: int = 1000, canary_capacity: int = 1000) -> None:
    for i in range(3):
        await fleet.add(f"stable-{i}", capacity=capacity, revision=STABLE)
    for i in range(2):
        await fleet.add(f"canary-{i}", capacity=canary_capacity, revision=CANARY)


def on_canary(pod: str) -> bool:
    return pod.startswith("canary-")


async def test_new_sessions_go_to_the_canary_by_weight(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    redis = fleet.client()
    try:
        await two_revisions(fleet)
        via = list(fleet.pods.values())
        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=20))
        grants = [await via[i % 5].create({}) for i in range(500)]
        canary = sum(on_canary(g.pod) for g in grants)
        assert 70 <= canary <= 130, canary  # 20% of 500, within three standard deviations
        # exactly the sessions whose bucket is below the weight (no side was full)
        assert {g.session_id for g in grants if on_canary(g.pod)} == {
            g.session_id for g in grants if revision_bucket(g.session_id) < 20
        }
        assert {g.pod for g in grants} == set(fleet.pods)  # the bound spreads each side over its pods

        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=0))
        assert not [g for g in [await via[i % 5].create({}) for i in range(100)] if on_canary(g.pod)]

        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=100))
        assert all(on_canary(g.pod) for g in [await via[i % 5].create({}) for i in range(100)])

        await clear_rollout(redis, fleet.keys)
        assert await read_rollout(redis, fleet.keys) is None
        after = [await via[i % 5].create({}) for i in range(200)]
        assert 0 < sum(on_canary(g.pod) for g in after) < 200  # every pod alike again
    finally:
        await redis.aclose()
        await fleet.close()


def fallbacks(to: str) -> float:
    value = REGISTRY.get_sample_value("voicefleet_placement_revision_fallbacks_total", {"to": to})
    assert value is not None
    return value


async def test_a_full_canary_never_refuses_a_call(redis_server: RedisServer) -> None:
    fleet = Fleet(redis_server.url)
    redis = fleet.client()
    try:
        await two_revisions(fleet, canary_capacity=3)
        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=100))
        before = fallbacks("stable")
        grants = [await fleet.pods["stable-0"].create({}) for _ in range(10)]
        assert sum(on_canary(g.pod) for g in grants) == 6  # both canary pods full
        assert fallbacks("stable") - before == 4
    finally:
        await redis.aclose()
        await fleet.close()


async def admitted(fleet: Fleet, via: RedisDirectory, n: int) -> dict[str, tuple[str, str]]:
    """``n`` live calls: session id -> (pod, resume token)."""
    calls: dict[str, tuple[str, str]] = {}
    for _ in range(n):
        grant = await via.create({})
        await fleet.pods[grant.pod].admit(grant.session_id, grant.resume_token, "p")
        calls[grant.session_id] = (grant.pod, grant.resume_token)
    return calls


async def test_live_calls_keep_their_pod_and_revision_when_the_weight_changes(
    redis_server: RedisServer,
) -> None:
    fleet = Fleet(redis_server.url)
    redis = fleet.client()
    try:
        await two_revisions(fleet)
        via = fleet.pods["stable-1"]
        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=50))
        calls = await admitted(fleet, via, 60)
        assert 0 < sum(on_canary(pod) for pod, _ in calls.values()) < 60
        for weight in (0, 100):
            await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=weight))
            for sid, (pod, token) in calls.items():
                assert (await via.resume(sid, token)).pod == pod

        # A canary pod dies: its calls are re-placed on the canary's other pod, weight 0 or not.
        await write_rollout(redis, fleet.keys, Rollout(canary=CANARY, weight=0))
        await fleet.crash("canary-0")
        lost = {sid: token for sid, (pod, token) in calls.items() if pod == "canary-0"}
        assert lost
        for sid, token in lost.items():
            again = await via.resume(sid, token)
            assert again.resumed and again.pod == "canary-1", again
        pins = [await redis.hget(fleet.keys.pin(sid), "revision") for sid in lost]
        assert set(pins) == {CANARY}
    finally:
        await redis.aclose()
        await fleet.close()
