"""A burst of creates on one pod never books more sessions than it has slots, and is not a Redis outage;
while Redis really is down, local admission counts the slots Redis reserved on the pod.

An attacker found 150 concurrent creates on a 40-slot pod gave 80 grants: the Redis client's pool
limit raised "Too many connections", which counted as Redis down, and local admission then saw only
the pod's own sessions, not the slots reserved in Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import grpc
import pytest
from aiohttp import ClientSession, TCPConnector
from redis.asyncio import Redis

from agent_pod.runtime import Pod
from agent_pod.sessions import session_metrics
from agent_pod.sessions.directory import AdmissionError
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import QueuedConnectionPool, client_options
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.sessions.store import Store, StoreBusy
from agent_pod.settings import PodSettings
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer
from voicefleet.v1 import session_pb2, session_pb2_grpc

from .helpers import FAST, PROMPT, Fleet

CAPACITY = 40
BURST = 150


def _redis_errors() -> float:
    return session_metrics.REDIS_ERRORS._value.get()


Answer = tuple[dict[str, str] | None, str | None]  # (grant, or None when refused; Retry-After)


async def _create_http(http: ClientSession, url: str) -> Answer:
    async with http.post(f"{url}/v1/sessions", json={}) as r:
        body = await r.json()
        if r.status == 201:
            return body, None
        assert r.status == 503, body
        return None, r.headers.get("Retry-After")


async def _create_grpc(stub: session_pb2_grpc.SessionServiceStub) -> Answer:
    try:
        grant = await stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=30)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        return None, dict(exc.trailing_metadata() or ()).get("retry-after")
    return {"sessionId": grant.session_id, "resumeToken": grant.resume_token}, None


async def _burst(pod: Pod, api: str) -> list[Answer]:
    """``BURST`` creates at once, over HTTP or gRPC SessionService."""
    if api == "http":
        async with ClientSession(connector=TCPConnector(limit=0)) as http:  # no client-side queue
            return await asyncio.gather(*(_create_http(http, pod.http_url) for _ in range(BURST)))
    async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        return await asyncio.gather(*(_create_grpc(stub) for _ in range(BURST)))


@pytest.mark.parametrize("api", ["http", "grpc"])
async def test_a_burst_of_creates_books_exactly_the_pods_slots(
    redis_server: RedisServer, tmp_path: Path, api: str
) -> None:
    key_file = tmp_path / "resume.key"
    key_file.write_bytes(b"burst-test-key-0123456789abcdef!")
    settings = PodSettings(
        bind_host="127.0.0.1",
        pod_name="burst-0",
        redis_url=redis_server.url,
        resume_key_file=key_file,
        log_format="text",
    )
    config = synthetic_config(
        agent="burst-" + uuid.uuid4().hex[:6], namespace="bursts", sessionsPerPod=CAPACITY
    )
    pod = Pod(settings, config, pod_ports())
    await pod.start()
    try:
        directory = pod.directory
        assert isinstance(directory, RedisDirectory)
        errors_before = _redis_errors()
        answers = await _burst(pod, api)
        grants = [grant for grant, _ in answers if grant is not None]
        refused = [retry for grant, retry in answers if grant is None]
        assert len(grants) == CAPACITY and len(refused) == BURST - CAPACITY
        assert all(retry is not None and int(retry) >= 1 for retry in refused)
        assert _redis_errors() == errors_before  # back-pressure is not an outage
        assert directory.store_healthy

        admitted = await asyncio.gather(
            *(directory.admit(g["sessionId"], g["resumeToken"], config.prompt_id) for g in grants)
        )
        assert {a.session_id for a in admitted} == {g["sessionId"] for g in grants}
        assert directory.live_sessions == CAPACITY
        try:
            await directory.admit(None, None, config.prompt_id)
        except AdmissionError as exc:
            assert exc.code == "unavailable"
        else:
            raise AssertionError("a 41st session was admitted on a 40-slot pod")
        assert directory.live_sessions == CAPACITY
        assert _redis_errors() == errors_before
    finally:
        await pod.stop()


async def test_local_admission_during_an_outage_counts_the_slots_redis_reserved(
    private_redis: RedisServer,
) -> None:
    fleet = Fleet(private_redis.url)
    loose = dataclasses.replace(FAST, epsilon=100.0)  # the load bound would count the empty front pod
    pod = await fleet.add("pod-a", capacity=6, tuning=loose)
    front = await fleet.add("front", capacity=0, tuning=loose)  # places sessions, takes none itself
    try:
        grants = [await front.create({}) for _ in range(4)] + [await pod.create({})]
        assert {g.pod for g in grants} == {"pod-a"}
        await pod.registry.heartbeat()  # the pod learns the slots other pods reserved on it
        private_redis.stop()
        first = await pod.admit(None, None, PROMPT)  # Redis down: noticed here, served locally
        assert not pod.store_healthy
        with pytest.raises(AdmissionError) as full:
            await pod.create({})
        assert full.value.code == "unavailable"
        with pytest.raises(AdmissionError):
            await pod.admit(None, None, PROMPT)
        # the callers Redis granted slots to before the outage are the ones who get them
        admitted = [await pod.admit(g.session_id, g.resume_token, PROMPT) for g in grants]
        assert [a.session_id for a in admitted] == [g.session_id for g in grants]
        assert pod.live_sessions == 6 and first.session_id not in {g.session_id for g in grants}
    finally:
        if not private_redis.running:
            private_redis.start()
        await fleet.close()


async def test_a_pool_that_stays_busy_is_back_pressure_not_an_outage(redis_server: RedisServer) -> None:
    pool = QueuedConnectionPool.from_url(redis_server.url, max_connections=1, timeout=0.2, **client_options())
    client = Redis.from_pool(pool)
    store = Store(client, AgentKeys("bursts", "pool"), FAST)
    errors_before = _redis_errors()
    try:
        taken = await pool.get_connection()  # the pool's one connection, busy elsewhere
        with pytest.raises(StoreBusy):
            await store.io(client.ping())
        assert store.healthy and _redis_errors() == errors_before
        waiting = asyncio.ensure_future(store.io(client.ping()))
        await pool.release(taken)
        assert await waiting  # a queued command goes once the connection is back
    finally:
        await client.aclose()
