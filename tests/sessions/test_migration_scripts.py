"""The Redis side of live call migration on a real Redis (one server, and a Redis Cluster): where a call
may move, the one-time token, and taking a call back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from agent_pod.sessions.directory import AdmissionError, MigrationRefused, MigrationTicket
from agent_pod.sessions.records import Handoff, HeldInput, PinRecord
from agent_pod.sessions.redis_client import RedisConnection
from agent_pod.sessions.redis_directory import RedisDirectory
from tests.support.redis import RedisServer
from tests.support.redis_ha import RedisClusterNodes

from .helpers import PROMPT, Fleet, conversation


async def live_call(fleet: Fleet, pod: str) -> tuple[str, str]:
    """A session created and admitted on ``pod``, with one turn; (session id, resume token)."""
    directory = fleet.pods[pod]
    admission = await directory.admit(None, None, PROMPT)
    assert admission.resume_token
    await directory.snapshot(conversation(admission.session_id, 1))
    return admission.session_id, admission.resume_token


async def move(directory: RedisDirectory, session_id: str) -> MigrationTicket:
    return await directory.begin_migration(
        session_id, conversation(session_id, 1), cross_revision=True, exclude=set(), follow_seconds=5
    )


async def pin(fleet: Fleet, session_id: str) -> PinRecord:
    redis = fleet.client()
    try:
        return PinRecord.from_mapping(await redis.hgetall(fleet.keys.pin(session_id)))
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(params=["server", "cluster"])
async def fleet(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Fleet]:
    """Every move on one redis-server and on a Redis Cluster (the scripts' keys all declared)."""
    if request.param == "server":
        fleet = Fleet(redis_server.url)
    else:
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        fleet = Fleet(cluster.url, connection=RedisConnection(url=cluster.url, cluster=True))
    yield fleet
    await fleet.close()


async def test_a_move_prefers_another_revision_then_the_least_loaded_pod(fleet: Fleet) -> None:
    for name, revision in (("a", "rev-1"), ("b", "rev-1"), ("c", "rev-2"), ("d", "rev-2")):
        await fleet.add(name, capacity=10, revision=revision)
    for _ in range(3):
        await live_call(fleet, "c")
    await live_call(fleet, "d")
    a = fleet.pods["a"]
    sid, _ = await live_call(fleet, "a")
    moving = conversation(sid, 1)
    ticket = await a.begin_migration(sid, moving, cross_revision=True, exclude=set(), follow_seconds=5)
    assert (ticket.pod, ticket.revision) == ("d", "rev-2")  # a new revision's pod, the emptier one
    assert await a.abort_migration(sid, ticket.pod)
    ticket = await a.begin_migration(sid, moving, cross_revision=False, exclude=set(), follow_seconds=5)
    assert ticket.pod == "b"
    assert await a.abort_migration(sid, ticket.pod)
    with pytest.raises(MigrationRefused) as refused:
        await a.begin_migration(sid, moving, cross_revision=False, exclude={"b"}, follow_seconds=5)
    assert refused.value.reason == "no_target"
    assert (await pin(fleet, sid)).pod == "a"  # a refused move changes nothing


async def test_the_migration_token_admits_once_and_only_on_the_target(fleet: Fleet) -> None:
    for name in ("a", "b", "c"):
        await fleet.add(name)
    a = fleet.pods["a"]
    sid, _ = await live_call(fleet, "a")
    ticket = await a.begin_migration(
        sid, conversation(sid, 1), cross_revision=True, exclude={"c"}, follow_seconds=5
    )
    moving = await pin(fleet, sid)
    assert (moving.pod, moving.state, moving.moving_from) == ("b", "moving", "a")
    assert ticket.token not in str(moving)  # only its hash is stored
    b, c = fleet.pods["b"], fleet.pods["c"]
    for directory, token in ((c, ticket.token), (b, "forged"), (b, "")):
        with pytest.raises(AdmissionError) as refused:
            await directory.admit(sid, None, PROMPT, migration_token=token or "x")
        assert refused.value.code == "unauthenticated"
    admission = await b.admit(sid, None, PROMPT, migration_token=ticket.token)
    assert admission.moved_from == "a" and admission.resumed
    assert admission.conversation is not None and admission.conversation.turns == 1
    await b.release(sid, "transport_lost")
    with pytest.raises(AdmissionError) as spent:
        await b.admit(sid, None, PROMPT, migration_token=ticket.token)
    assert spent.value.code == "unauthenticated"


async def test_a_call_is_taken_back_only_while_the_target_has_not_admitted_the_caller(fleet: Fleet) -> None:
    for name in ("a", "b"):
        await fleet.add(name)
    a, b = fleet.pods["a"], fleet.pods["b"]
    sid, token = await live_call(fleet, "a")
    ticket = await a.begin_migration(
        sid, conversation(sid, 1), cross_revision=True, exclude=set(), follow_seconds=5
    )
    assert await a.abort_migration(sid, ticket.pod)  # nobody arrived: back to a
    restored = await pin(fleet, sid)
    assert (restored.pod, restored.state, restored.handoff_hash) == ("a", "live", "")
    with pytest.raises(AdmissionError):  # the token died with the move
        await b.admit(sid, None, PROMPT, migration_token=ticket.token)
    ticket = await a.begin_migration(
        sid, conversation(sid, 1), cross_revision=True, exclude=set(), follow_seconds=5
    )
    await b.admit(sid, None, PROMPT, migration_token=ticket.token)
    assert not await a.abort_migration(sid, ticket.pod)  # the caller is on b now
    assert (await pin(fleet, sid)).pod == "b"
    # ... unless the caller says it stayed: then whatever b admitted is not its live call
    assert await a.abort_migration(sid, ticket.pod, force=True)
    assert (await pin(fleet, sid)).pod == "a"
    assert token  # the caller's own resume token is untouched by all this


async def test_the_new_pod_stops_waiting_for_a_handoff_when_the_old_pod_is_gone(fleet: Fleet) -> None:
    for name in ("a", "b"):
        await fleet.add(name)
    a, b = fleet.pods["a"], fleet.pods["b"]
    sid, _ = await live_call(fleet, "a")
    ticket = await move(a, sid)
    await b.admit(sid, None, PROMPT, migration_token=ticket.token)
    handoff = Handoff(from_pod="a", inputs=[HeldInput(text="said during the switch")])
    await a.push_handoff(sid, handoff)
    assert await b.take_handoff(sid, "a", within=5) == handoff
    started = time.monotonic()
    await fleet.crash("a")  # silent: its entry goes stale; a handoff will never come
    assert await b.take_handoff(sid, "a", within=30) is None
    assert time.monotonic() - started < 5  # a stale heartbeat (1 s here), not the whole wait
