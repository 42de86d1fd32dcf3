"""A draining pod moves its live gRPC calls to another pod at a quiet moment (real Redis, real gRPC)."""

from __future__ import annotations

import asyncio

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import PinRecord
from agent_pod.sessions.redis_client import connect_redis
from tests.support.migration import Fleet, answers, events


async def pin(fleet: Fleet, session_id: str) -> PinRecord:
    redis = connect_redis(fleet.redis.url)
    try:
        keys = AgentKeys(fleet.config.namespace, fleet.config.agent)
        return PinRecord.from_mapping(await redis.hgetall(keys.pin(session_id)))
    finally:
        await redis.aclose()


async def test_a_draining_pod_moves_its_call_and_the_conversation_goes_on(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with GrpcCaller(a.grpc_address) as call:
        for n, text in enumerate(["first", "second"], 1):
            call.send_text(text)
            await answers(call, n)
        drain = asyncio.ensure_future(a.drain())
        # the drain ends once the call has moved, not after the call (drainTimeoutSeconds is 60)
        await asyncio.wait_for(drain, 10)
        assert call.pods == ["pod-a", "pod-b"]
        started = events(call, "session_started")[-1]
        assert started["migrated"] and started["resumed"] and started["restored_turns"] == 2
        call.send_text("third")
        texts = await answers(call, 3)
        assert texts == ["You said: first.", "You said: second.", "You said: third."]
        assert a.hub is not None and a.hub.live_sessions == 0
        assert b.hub is not None and b.hub.live_sessions == 1
        moved = b.hub.live()[0].session.conversation
        assert [m.content for m in moved.messages if m.role == "user"] == ["first", "second", "third"]
        record = await pin(fleet, call.session_id)
        assert (record.pod, record.state) == ("pod-b", "live")
        assert record.moving_from == record.handoff_hash == ""  # the one-time token is spent
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 5)
    assert call.recorder.summary.ended == "client_ended"


async def test_a_caller_that_does_not_follow_moves_is_served_until_it_ends(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    await fleet.add("pod-b")
    async with (
        GrpcCaller(a.grpc_address) as mover,
        GrpcCaller(a.grpc_address, follow_migrations=False) as stayer,
    ):
        drain = asyncio.ensure_future(a.drain())
        await mover.recorder.wait(lambda _: len(mover.pods) == 2, 10)
        stayer.send_text("still here")
        assert await answers(stayer, 1) == ["You said: still here."]
        assert stayer.pods == ["pod-a"] and not events(stayer, "migration_offer")
        assert not drain.done()  # the drain waits for the call it could not move, as without migration
        await stayer.end()
        await asyncio.wait_for(drain, 10)
