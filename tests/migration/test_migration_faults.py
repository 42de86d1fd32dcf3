"""A move that goes wrong ends with the call alive on exactly one pod and its history intact:
the target dies, the caller reconnects to the old pod, Redis fails mid-move, the caller speaks
at the moment of the move. Real redis-server, real gRPC, in-process pods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from agent_pod.client.caller_audio import frames
from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import PinRecord
from agent_pod.sessions.redis_client import connect_redis
from tests.support.migration import Fleet, answers, events, user_turns
from tests.support.pod import tone
from tests.support.redis import RedisServer
from voicefleet.v1 import agent_pb2, session_pb2, session_pb2_grpc

from .test_grpc_migration import pin

RATE = 16000


def migrations(outcome: str) -> float:
    return REGISTRY.get_sample_value("voicefleet_migrations_total", {"outcome": outcome}) or 0.0


def live_on(fleet: Fleet) -> dict[str, int]:
    return {name: pod.hub.live_sessions for name, pod in fleet.pods.items() if pod.hub is not None}


async def talk(call: GrpcCaller, *texts: str) -> None:
    for text in texts:
        before = len(call.recorder.summary.agent_texts)
        call.send_text(text)
        await answers(call, before + 1)


async def offer(call: GrpcCaller, count: int = 1, within: float = 25.0) -> agent_pb2.MigrationOffer:
    """The ``count``-th MigrationOffer the caller got."""
    await call.recorder.wait(lambda _: len(events(call, "migration_offer")) >= count, within)
    fields = events(call, "migration_offer")[count - 1]
    return agent_pb2.MigrationOffer(**fields)


async def test_the_target_dies_before_the_caller_arrives(fleet: Fleet) -> None:
    a, *_ = [await fleet.add(name) for name in ("pod-a", "pod-b", "pod-c")]
    failed_before = migrations("caller_failed")
    async with GrpcCaller(a.grpc_address, auto_follow=False) as call:
        await talk(call, "one", "two")
        drain = asyncio.ensure_future(a.drain())
        first = await offer(call)
        await fleet.crash(first.pod)
        call.auto_follow = True  # the next offer is followed as it comes
        await call.follow(first)  # the dead pod refuses: the caller says so and stays on pod-a
        second = await offer(call, 2)
        assert second.pod not in (first.pod, "pod-a")
        await asyncio.wait_for(drain, 15)
        assert call.pods == ["pod-a", second.pod]
        await talk(call, "three")
        assert user_turns(fleet.pods[second.pod]) == ["one", "two", "three"]
        assert live_on(fleet) == {"pod-a": 0, second.pod: 1}
    assert migrations("caller_failed") == failed_before + 1


async def test_a_caller_that_reconnects_to_the_old_pod_is_sent_on(fleet: Fleet) -> None:
    a, b = await fleet.add("pod-a"), await fleet.add("pod-b")
    async with GrpcCaller(a.grpc_address, auto_follow=False) as call:
        await talk(call, "one", "two")
        token = call.recorder.summary.resume_token
        assert token
        drain = asyncio.ensure_future(a.drain())
        await offer(call)
        call.drop()  # the caller loses its connection instead of following
    # back to the pod it knew: a draining pod takes no streams
    with pytest.raises(ConnectionError, match="UNAVAILABLE"):
        async with GrpcCaller(a.grpc_address, session_id=call.session_id, resume_token=token):
            pass
    # as the refusal says, resume: the pin already names the new pod
    async with grpc.aio.insecure_channel(a.grpc_address) as channel:
        grant = await session_pb2_grpc.SessionServiceStub(channel).ResumeSession(
            session_pb2.ResumeSessionRequest(session_id=call.session_id, resume_token=token)
        )
    assert grant.pod == "pod-b"
    async with GrpcCaller(grant.grpc_address, session_id=call.session_id, resume_token=token) as again:
        started = events(again, "session_started")[0]
        assert started["migrated"] and started["restored_turns"] == 2
        await talk(again, "three")
        assert user_turns(b) == ["one", "two", "three"]
        await asyncio.wait_for(drain, 15)
        assert live_on(fleet) == {"pod-a": 0, "pod-b": 1}
        assert (await pin(fleet, call.session_id)).pod == "pod-b"


async def test_the_caller_speaks_at_the_moment_of_the_move(fleet: Fleet) -> None:
    a, b = await fleet.add("pod-a"), await fleet.add("pod-b")
    async with GrpcCaller(a.grpc_address, auto_follow=False) as call:
        await talk(call, "one")
        drain = asyncio.ensure_future(a.drain())
        move = await offer(call)
        # 600 ms of speech, then silence; the caller switches pods 200 ms into it
        speech = frames(tone(RATE, 0.6, silence_after=0.8), RATE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, frame in enumerate(speech):
            if i == 10:
                await call.follow(move)
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))  # a microphone's pace
            call.send_audio(frame)
        summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= 2, 10)
        await asyncio.wait_for(drain, 10)
        assert call.pods == ["pod-a", "pod-b"]
        # heard once, whole, by the new pod
        assert summary.transcripts == ["one", "hello there"]
        assert summary.agent_texts == ["You said: one.", "Hello! How can I help you today?"]
        assert user_turns(b) == ["one", "hello there"]
        (completed,) = events(call, "migration_completed")
        assert completed["from_pod"] == "pod-a" and completed["replayed_ms"] >= 150
        assert live_on(fleet) == {"pod-a": 0, "pod-b": 1}


async def test_redis_fails_after_the_pin_moved(tmp_path: Path, private_redis: RedisServer) -> None:
    fleet = Fleet(tmp_path, private_redis)
    try:
        a, *_ = [await fleet.add(name) for name in ("pod-a", "pod-b", "pod-c")]
        async with GrpcCaller(a.grpc_address, auto_follow=False) as call:
            await talk(call, "one")
            drain = asyncio.ensure_future(a.drain())
            first = await offer(call)
            private_redis.stop()
            call.auto_follow = True
            await call.follow(first)  # the target cannot admit anyone without Redis: the call stays
            await talk(call, "two")  # ... and goes on, on pod-a
            assert call.pods == ["pod-a"]
            private_redis.start()  # empty: the pods re-register, pod-a writes its pin back
            second = await offer(call, 2, within=30)
            assert second.pod not in (first.pod, "pod-a")
            await call.recorder.wait(lambda _: len(call.pods) == 2, 10)
            await asyncio.wait_for(drain, 15)
            await talk(call, "three")
            assert user_turns(fleet.pods[second.pod]) == ["one", "two", "three"]
            assert live_on(fleet) == {"pod-a": 0, "pod-b": 0, "pod-c": 0} | {second.pod: 1}
            record: PinRecord = await pin(fleet, call.session_id)
            assert (record.pod, record.state) == (second.pod, "live")
    finally:
        await fleet.close()


async def test_the_caller_hangs_up_during_the_move(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    await fleet.add("pod-b")
    async with GrpcCaller(a.grpc_address, auto_follow=False) as call:
        await talk(call, "one")
        drain = asyncio.ensure_future(a.drain())
        move = await offer(call)
        await call.end()  # reaches pod-a while the call is frozen: held, like everything else
        await call.follow(move)  # the pod that hears the caller's input is the one that ends the call
        # pod-a still reads the caller's MigrationResult after the held end: no wait for the 5 s follow
        # timeout before the call ends
        summary = await call.recorder.wait(lambda s: s.ended is not None, 4)
        assert summary.ended == "client_ended"
        await asyncio.wait_for(drain, 10)
    assert call.pods == ["pod-a", "pod-b"]
    assert live_on(fleet) == {"pod-a": 0, "pod-b": 0}
    redis = connect_redis(fleet.redis.url)
    try:
        keys = AgentKeys(fleet.config.namespace, fleet.config.agent)
        assert not await redis.exists(keys.pin(call.session_id), keys.snapshot(call.session_id))
    finally:
        await redis.aclose()
