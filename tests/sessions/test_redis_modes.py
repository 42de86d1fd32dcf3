"""The directory on each Redis mode, with real servers: Sentinel, TLS (alone and behind Sentinel), and
a Sentinel failover under a live session (the master SIGKILLed); on a Cluster also the canary split
and the per-revision counters (their scripts and transactions must stay on the agent's slot)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from agent_pod.conversation import Conversation
from agent_pod.sessions.records import Rollout
from agent_pod.sessions.redis_client import POOL_CONNECTIONS, QueuedSentinelPool, RedisConnection, connect
from agent_pod.sessions.revision_stats import RevisionTally
from agent_pod.sessions.rollout_store import read_revision_counters, write_rollout
from tests.support.redis import RedisServer
from tests.support.redis_ha import MASTER_NAME, RedisClusterNodes, SentinelGroup
from tests.support.tls import TLSFiles, make_tls
from tests.support.wait import async_wait_for

from .helpers import PROMPT, Fleet, conversation


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls(tmp_path / "tls")


def sentinel_connection(group: SentinelGroup, tls: TLSFiles | None = None) -> RedisConnection:
    return RedisConnection(
        sentinels=group.addresses,
        sentinel_master=MASTER_NAME,
        tls=tls is not None,
        tls_ca_file=str(tls.ca) if tls else None,
    )


async def place_admit_snapshot_resume(fleet: Fleet) -> None:
    """A session placed, admitted, written after turns, its pod lost, resumed elsewhere with its turns."""
    await fleet.add("pod-a")
    await fleet.add("pod-b")
    grant = await fleet.pods["pod-a"].create({})
    owner = fleet.pods[grant.pod]
    admission = await owner.admit(grant.session_id, grant.resume_token, PROMPT)
    assert admission.session_id == grant.session_id
    for turn in (1, 2):
        await owner.snapshot(conversation(grant.session_id, turn))
    await fleet.crash(grant.pod)
    survivor = next(d for n, d in fleet.pods.items() if n != grant.pod)
    moved = await survivor.resume(grant.session_id, grant.resume_token)
    assert moved.pod == survivor.identity.name and moved.resumed
    again = await survivor.admit(grant.session_id, grant.resume_token, PROMPT)
    assert again.conversation == conversation(grant.session_id, 2)
    assert survivor.store_healthy


async def test_directory_behind_sentinel(sentinel_group: SentinelGroup) -> None:
    fleet = Fleet("", connection=sentinel_connection(sentinel_group))
    try:
        await place_admit_snapshot_resume(fleet)
        client = next(iter(fleet.pods.values())).redis
        assert isinstance(client, Redis)  # a Sentinel-managed master, queueing for its connections
        pool = client.connection_pool
        assert isinstance(pool, QueuedSentinelPool) and pool.max_connections == POOL_CONNECTIONS
    finally:
        await fleet.close()


async def test_directory_over_tls(tls: TLSFiles) -> None:
    server = RedisServer(tls=tls)
    server.start()
    fleet = Fleet(server.url, connection=RedisConnection(url=server.url, tls_ca_file=str(tls.ca)))
    try:
        await place_admit_snapshot_resume(fleet)
        plain = RedisConnection(url=server.url)  # the system CAs do not know the test CA
        refused = Fleet(server.url, connection=plain)
        pod = await refused.add("no-ca")
        assert not pod.store_healthy
        await refused.close()
    finally:
        await fleet.close()
        server.cleanup()


async def test_directory_over_mutual_tls(tls: TLSFiles) -> None:
    server = RedisServer(tls=tls, extra=["--tls-auth-clients", "yes"])  # clients must show a certificate
    server.start()
    with_cert = RedisConnection(
        url=server.url,
        tls_ca_file=str(tls.ca),
        tls_cert_file=str(tls.client_cert),
        tls_key_file=str(tls.client_key),
    )
    fleet = Fleet(server.url, connection=with_cert)
    try:
        await place_admit_snapshot_resume(fleet)
        refused = Fleet(server.url, connection=RedisConnection(url=server.url, tls_ca_file=str(tls.ca)))
        pod = await refused.add("no-client-cert")
        assert not pod.store_healthy
        await refused.close()
    finally:
        await fleet.close()
        server.cleanup()


async def test_directory_behind_sentinel_over_tls(tls: TLSFiles) -> None:
    group = SentinelGroup(replicas=1, tls=tls)
    try:
        group.start()
        fleet = Fleet("", connection=sentinel_connection(group, tls))
        try:
            await place_admit_snapshot_resume(fleet)
        finally:
            await fleet.close()
    finally:
        group.cleanup()


async def test_directory_behind_sentinel_with_passwords() -> None:
    group = SentinelGroup(replicas=1, password="data-secret", sentinel_password="sentinel-secret")
    try:
        group.start()
        base = sentinel_connection(group)
        wrong = base.model_copy(update={"password": "data-secret", "sentinel_password": "nope"})
        refused = Fleet("", connection=wrong)
        pod = await refused.add("wrong-password")
        assert not pod.store_healthy  # the sentinels refuse it, so no master is found
        await refused.close()
        right = base.model_copy(update={"password": "data-secret", "sentinel_password": "sentinel-secret"})
        fleet = Fleet("", connection=right)
        try:
            await place_admit_snapshot_resume(fleet)
        finally:
            await fleet.close()
    finally:
        group.cleanup()


async def _created(fleet: Fleet) -> bool:
    pod = fleet.pods["pod-a"]
    if not pod.store_healthy:
        return False
    grant = await pod.create({})
    return pod.store_healthy and grant.pod in fleet.pods  # a local grant marks the store down


async def test_a_failover_keeps_the_session_and_placement_comes_back(sentinel_group: SentinelGroup) -> None:
    fleet = Fleet("", connection=sentinel_connection(sentinel_group))
    try:
        a = await fleet.add("pod-a")
        await fleet.add("pod-b")
        grant = await a.create({})
        owner = fleet.pods[grant.pod]
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 1))
        old = sentinel_group.master_address()
        sentinel_group.kill_master()
        killed = time.monotonic()
        await owner.snapshot(conversation(grant.session_id, 2))  # queued while the master is gone
        assert owner.live_sessions == 1
        await async_wait_for(lambda: _created(fleet), timeout=30, what="placement on the new master")
        gap = time.monotonic() - killed
        assert sentinel_group.master_address() != old
        await async_wait_for(
            lambda: _flushed(fleet, grant.pod), timeout=10, what="queued snapshot written to the new master"
        )
        redis = fleet.client()
        try:
            assert await redis.hget(fleet.keys.pin(grant.session_id), "pod") == grant.pod
            stored = await redis.get(fleet.keys.snapshot(grant.session_id))
            assert stored is not None
            assert Conversation.model_validate_json(stored) == conversation(grant.session_id, 2)
        finally:
            await redis.aclose()
        assert gap < 15, f"placement gap {gap:.1f}s"
    finally:
        await fleet.close()


async def _flushed(fleet: Fleet, pod: str) -> bool:
    directory = fleet.pods[pod]
    return directory.store_healthy and directory.pending_snapshots == 0


async def test_a_demoted_master_refusing_writes_is_an_outage_not_a_crash(redis_server: RedisServer) -> None:
    replica = RedisServer(extra=["--replicaof", redis_server.host, str(redis_server.port)])
    replica.start()
    fleet = Fleet(replica.url)  # what a client that still dials the old master sees after a failover
    try:
        pod = await fleet.add("pod-a", capacity=2)
        assert not pod.store_healthy  # ReadOnlyError: served from local state, probed with backoff
        admission = await pod.admit(None, None, PROMPT)
        assert pod.live_sessions == 1 and admission.resume_token
    finally:
        await fleet.close()
        replica.cleanup()


async def test_directory_on_redis_cluster() -> None:
    cluster = RedisClusterNodes(masters=3)
    try:
        cluster.start()
        fleet = Fleet(cluster.url, connection=RedisConnection(url=cluster.url, cluster=True))
        try:
            await place_admit_snapshot_resume(fleet)
            await canary_and_counters(fleet)
        finally:
            await fleet.close()
    finally:
        cluster.cleanup()


async def canary_and_counters(fleet: Fleet) -> None:
    """Every new session to the canary at weight 100, and a pod's counts in its revision's totals."""
    tally = RevisionTally()
    await fleet.add("pod-canary", revision="rev-2", revision_tally=tally)
    redis = fleet.client()
    try:
        await write_rollout(redis, fleet.keys, Rollout(canary="rev-2", weight=100))
        stable = next(d for d in fleet.pods.values() if d.identity.revision != "rev-2")
        grants = [await stable.create({}) for _ in range(5)]
        assert {g.pod for g in grants} == {"pod-canary"}
        tally.add("turns", 3)
        tally.observe_latency_ms(250)

        async def written() -> bool:
            counters = (await read_revision_counters(redis, fleet.keys, ["rev-2"]))["rev-2"]
            return counters.turns == 3 and counters.latency_count == 1

        await async_wait_for(written, timeout=10, what="the canary's counts in its revision's totals")
    finally:
        await redis.aclose()


async def test_a_cluster_failover_keeps_the_session_and_placement_comes_back() -> None:
    cluster = RedisClusterNodes(masters=3, replicas=1)
    try:
        cluster.start(within=60)
        fleet = Fleet(cluster.url, connection=RedisConnection(url=cluster.url, cluster=True))
        try:
            a = await fleet.add("pod-a")
            await fleet.add("pod-b")
            grant = await a.create({})
            owner = fleet.pods[grant.pod]
            await owner.admit(grant.session_id, grant.resume_token, PROMPT)
            await owner.snapshot(conversation(grant.session_id, 1))
            master = cluster.master_of(fleet.keys.pods)
            assert master.process is not None
            master.process.kill()  # the node holding the agent's slot dies; its replica takes over
            master.process.wait(timeout=10)
            await owner.snapshot(conversation(grant.session_id, 2))
            assert owner.live_sessions == 1
            await async_wait_for(lambda: _created(fleet), timeout=60, what="placement after the failover")
            assert cluster.master_of(fleet.keys.pods) is not master
            await async_wait_for(
                lambda: _flushed(fleet, grant.pod), timeout=20, what="queued snapshot written"
            )
            # A fresh client needs a living seed node (the first one may be the one killed).
            seed = next(n for n in cluster.nodes if n.process is not None and n.process.poll() is None)
            redis = connect(RedisConnection(url=seed.url, cluster=True))
            try:
                assert await redis.hget(fleet.keys.pin(grant.session_id), "pod") == grant.pod
                stored = await redis.get(fleet.keys.snapshot(grant.session_id))
                assert stored is not None
                assert Conversation.model_validate_json(stored) == conversation(grant.session_id, 2)
            finally:
                await redis.aclose()
        finally:
            await fleet.close()
    finally:
        cluster.cleanup()
