"""Redis stopped and restarted (empty) under live sessions: nothing is dropped, new sessions are
served from local knowledge, snapshots queue and are written back on recovery."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from agent_pod.sessions.directory import AdmissionError
from agent_pod.sessions.records import PinRecord, PodRecord
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

from .helpers import PROMPT, Fleet, conversation


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_redis_outage_drops_nothing_and_resyncs(private_redis: RedisServer) -> None:
    fleet = Fleet(private_redis.url)
    a = await fleet.add("pod-a", capacity=20)
    b = await fleet.add("pod-b", capacity=20)
    live = []
    for _ in range(10):
        grant = await a.create({})
        pod = fleet.pods[grant.pod]
        await pod.admit(grant.session_id, grant.resume_token, PROMPT)
        await pod.snapshot(conversation(grant.session_id, 1))
        live.append((grant, pod))
    ending = live.pop()
    errors_before = metric("voicefleet_redis_errors_total")
    try:
        private_redis.stop()
        # the first write notices the outage; every later call answers at once from memory
        for grant, pod in live:
            started = time.monotonic()
            await pod.snapshot(conversation(grant.session_id, 2))
            assert time.monotonic() - started < 2.0
        assert not a.store_healthy or not b.store_healthy
        await async_wait_for(
            lambda: _async(not a.store_healthy and not b.store_healthy), timeout=10, what="outage noticed"
        )
        assert a.pending_snapshots + b.pending_snapshots == len(live)
        assert metric("voicefleet_snapshot_queue_depth") >= len(live)
        assert metric("voicefleet_redis_errors_total") > errors_before
        # newer turns replace queued ones (latest per session wins)
        for grant, pod in live:
            await pod.snapshot(conversation(grant.session_id, 3))
        assert a.pending_snapshots + b.pending_snapshots == len(live)
        # live sessions reconnecting to their pod are served from memory
        grant, pod = live[0]
        await pod.release(grant.session_id, "transport_lost")
        resumed = await pod.resume(grant.session_id, grant.resume_token)
        assert resumed.pod == pod.identity.name
        admission = await pod.admit(grant.session_id, grant.resume_token, PROMPT)
        assert admission.resumed and admission.conversation and admission.conversation.turns == 3
        # a session unknown to this pod cannot be checked: refused with a retry hint
        foreign = next((g for g, p in live if p is not b), None)
        if foreign is not None:
            with pytest.raises(AdmissionError) as refused:
                await b.admit(foreign.session_id, foreign.resume_token, PROMPT)
            assert refused.value.code == "unavailable" and refused.value.retry_after_seconds
        # new sessions: served locally while this pod has room
        direct = await b.admit(None, None, PROMPT)
        await b.snapshot(conversation(direct.session_id, 1))
        local_grant = await a.create({})
        assert local_grant.pod == "pod-a"
        await a.admit(local_grant.session_id, local_grant.resume_token, PROMPT)
        # a session ends during the outage
        await fleet.pods[ending[0].pod].release(ending[0].session_id, "completed")

        private_redis.start()  # comes back empty
        await async_wait_for(
            lambda: _async(
                a.store_healthy and b.store_healthy and not a.pending_snapshots and not b.pending_snapshots
            ),
            timeout=20,
            what="both pods re-synced",
        )
        redis = fleet.client()
        try:
            for name in ("pod-a", "pod-b"):
                assert PodRecord.from_mapping(await redis.hgetall(fleet.keys.pod(name))).state == "ready"
                assert await redis.sismember(fleet.keys.pods, name)
            for grant, pod in live:
                pin = PinRecord.from_mapping(await redis.hgetall(fleet.keys.pin(grant.session_id)))
                assert pin.pod == pod.identity.name
                snapshot = await redis.get(fleet.keys.snapshot(grant.session_id))
                assert isinstance(snapshot, str) and '"turns":3' in snapshot
                assert await redis.zscore(fleet.keys.load(pod.identity.name), grant.session_id)
            for sid, name in ((direct.session_id, "pod-b"), (local_grant.session_id, "pod-a")):
                assert PinRecord.from_mapping(await redis.hgetall(fleet.keys.pin(sid))).pod == name
            assert not await redis.exists(fleet.keys.pin(ending[0].session_id))
            assert metric("voicefleet_snapshot_queue_depth") == 0
            # and the fleet places again
            assert (await b.create({})).pod in ("pod-a", "pod-b")
        finally:
            await redis.aclose()
        assert a.live_sessions + b.live_sessions == len(live) + 2
    finally:
        if not private_redis.running:
            private_redis.start()
        await fleet.close()


async def _async(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


async def test_pod_starts_while_redis_is_down_and_registers_later(private_redis: RedisServer) -> None:
    private_redis.stop()
    fleet = Fleet(private_redis.url)
    pod = await fleet.add("late", capacity=3)
    try:
        assert not pod.store_healthy
        admissions = [await pod.admit(None, None, PROMPT) for _ in range(3)]
        with pytest.raises(AdmissionError) as full:
            await pod.admit(None, None, PROMPT)
        assert full.value.code == "unavailable"
        private_redis.start()
        await async_wait_for(lambda: _async(pod.store_healthy), timeout=20, what="registration")
        redis = fleet.client()
        assert await redis.sismember(fleet.keys.pods, "late")
        for admission in admissions:
            assert await redis.hget(fleet.keys.pin(admission.session_id), "pod") == "late"
        await redis.aclose()
    finally:
        await fleet.close()
