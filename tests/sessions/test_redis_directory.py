"""RedisDirectory on a real Redis: admission, tokens, resume on the pinned pod or re-placed with
the conversation restored, drain, release."""

from __future__ import annotations

import time

import pytest

from agent_pod.sessions.directory import AdmissionError
from agent_pod.sessions.fleet_state import delete_agent_keys, read_fleet
from agent_pod.sessions.records import PinRecord
from agent_pod.sessions.tokens import ResumeTokens, token_hash
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

from .helpers import KEY, PROMPT, Fleet, conversation


async def start_fleet(url: str, pods: int = 3, capacity: int = 50) -> Fleet:
    fleet = Fleet(url)
    for i in range(pods):
        await fleet.add(f"pod-{i}", capacity=capacity)
    return fleet


async def test_a_created_session_is_admitted_only_on_its_pod(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url)
    try:
        grant = await fleet.pods["pod-0"].create({"caller": "test"})
        assert grant.grpc_address == fleet.pods[grant.pod].identity.grpc_address
        assert grant.webrtc_url.endswith(f"/v1/sessions/{grant.session_id}/webrtc")
        other = next(d for n, d in fleet.pods.items() if n != grant.pod)
        with pytest.raises(AdmissionError) as wrong:
            await other.admit(grant.session_id, grant.resume_token, PROMPT)
        assert wrong.value.code == "wrong_pod" and wrong.value.grpc_address == grant.grpc_address
        admission = await fleet.pods[grant.pod].admit(grant.session_id, grant.resume_token, PROMPT)
        assert admission.session_id == grant.session_id and not admission.resumed
        assert fleet.pods[grant.pod].live_sessions == 1
        redis = fleet.client()
        pin = PinRecord.from_mapping(await redis.hgetall(fleet.keys.pin(grant.session_id)))
        assert pin.pod == grant.pod and pin.state == "live" and pin.prompt_id == PROMPT
        assert pin.token_hash == token_hash(grant.resume_token) and grant.resume_token not in str(pin)
        await redis.aclose()
    finally:
        await fleet.close()


async def test_wrong_expired_or_missing_tokens_are_refused(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    try:
        api = fleet.pods["pod-0"]
        grant = await api.create({})
        owner = fleet.pods[grant.pod]
        tokens = ResumeTokens(KEY, 3600)
        other_key = ResumeTokens(b"another-key-0123456789abcdef", 3600).issue(grant.session_id).token
        expired = tokens.issue(grant.session_id, now=time.time() - 7200).token
        resigned = tokens.issue(grant.session_id, now=time.time() + 5).token  # valid HMAC, not the issued one
        foreign = (await api.create({})).resume_token  # another session's token
        for token in [None, "", "garbage", other_key, expired, foreign]:
            with pytest.raises(AdmissionError) as refused:
                await api.resume(grant.session_id, token)
            assert refused.value.code == "unauthenticated"
            with pytest.raises(AdmissionError) as refused:
                await owner.admit(grant.session_id, token, PROMPT)
            assert refused.value.code == "unauthenticated"
        for call in (api.resume(grant.session_id, resigned), owner.admit(grant.session_id, resigned, PROMPT)):
            with pytest.raises(AdmissionError, match="not the one issued") as refused:
                await call
            assert refused.value.code == "unauthenticated"
        # the rightful caller still gets in
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
    finally:
        await fleet.close()


async def test_resume_goes_back_to_the_pinned_pod_while_it_lives(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url)
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 2))
        await owner.release(grant.session_id, "transport_lost")
        again = await fleet.pods["pod-2"].resume(grant.session_id, grant.resume_token)
        assert again.pod == grant.pod and again.resumed
        admission = await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        assert admission.resumed and admission.conversation == conversation(grant.session_id, 2)
    finally:
        await fleet.close()


async def test_a_session_of_a_dead_pod_is_re_placed_with_its_conversation(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url)
    redis = fleet.client()
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        for turn in range(1, 4):
            await owner.snapshot(conversation(grant.session_id, turn))
        await fleet.crash(grant.pod)
        survivor = next(d for n, d in fleet.pods.items() if n != grant.pod)
        moved = await survivor.resume(grant.session_id, grant.resume_token)
        assert moved.pod != grant.pod and moved.resumed
        new_owner = fleet.pods[moved.pod]
        admission = await new_owner.admit(grant.session_id, grant.resume_token, PROMPT)
        assert admission.resumed and admission.conversation == conversation(grant.session_id, 3)
        # the dead pod no longer carries the session's load, and is marked lost
        assert await redis.zscore(fleet.keys.load(grant.pod), grant.session_id) is None
        assert await redis.hget(fleet.keys.pod(grant.pod), "state") == "lost"
        # a second resume is idempotent: same new pod
        assert (await survivor.resume(grant.session_id, grant.resume_token)).pod == moved.pod
    finally:
        await redis.aclose()
        for name in list(fleet.listeners):
            await fleet.pods[name].aclose()
            fleet.listeners.pop(name).close()


async def test_a_stale_pod_is_skipped_without_a_probe(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    redis = fleet.client()
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 1))
        await fleet.crash(grant.pod)
        other = next(n for n in fleet.pods if n != grant.pod)
        # once its heartbeat is stale, placement leaves the dead pod out of new sessions too
        await async_wait_for(
            lambda: _stale(redis, fleet, grant.pod), timeout=10, what="dead pod's heartbeat to go stale"
        )
        assert {(await fleet.pods[other].create({})).pod for _ in range(10)} == {other}
        moved = await fleet.pods[other].resume(grant.session_id, grant.resume_token)
        assert moved.pod == other
    finally:
        await redis.aclose()
        for name in list(fleet.listeners):
            await fleet.pods[name].aclose()
            fleet.listeners.pop(name).close()


async def _stale(redis, fleet: Fleet, pod: str) -> bool:
    state = await read_fleet(redis, fleet.keys.namespace, fleet.keys.agent, stale_seconds=1.0)
    return any(p.name == pod and p.stale for p in state.pods)


async def test_a_new_stream_without_session_id_gets_a_resumable_session(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    try:
        pod = fleet.pods["pod-1"]
        admission = await pod.admit(None, None, PROMPT)
        assert admission.resume_token and not admission.resumed
        await pod.snapshot(conversation(admission.session_id, 1))
        await pod.release(admission.session_id, "transport_lost")
        grant = await fleet.pods["pod-0"].resume(admission.session_id, admission.resume_token)
        assert grant.pod == "pod-1"
        again = await pod.admit(admission.session_id, admission.resume_token, PROMPT)
        assert again.resumed and again.conversation and again.conversation.turns == 1
    finally:
        await fleet.close()


async def test_an_ended_session_cannot_be_resumed(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 1))
        await owner.release(grant.session_id, "completed")
        assert owner.live_sessions == 0
        with pytest.raises(AdmissionError) as gone:
            await fleet.pods["pod-0"].resume(grant.session_id, grant.resume_token)
        assert gone.value.code == "not_found"
        redis = fleet.client()
        assert not await redis.exists(fleet.keys.pin(grant.session_id), fleet.keys.snapshot(grant.session_id))
        assert await redis.zcard(fleet.keys.load(grant.pod)) == 0
        await redis.aclose()
    finally:
        await fleet.close()


async def test_a_draining_pod_hands_its_unconnected_sessions_to_others(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    try:
        grants = [await fleet.pods["pod-0"].create({}) for _ in range(6)]
        reserved = next(g for g in grants if g.pod == "pod-1")
        await fleet.pods["pod-1"].drain()
        with pytest.raises(AdmissionError) as refused:
            await fleet.pods["pod-1"].admit(reserved.session_id, reserved.resume_token, PROMPT)
        assert refused.value.code == "unavailable"
        moved = await fleet.pods["pod-1"].resume(reserved.session_id, reserved.resume_token)
        assert moved.pod == "pod-0"
        await fleet.pods["pod-0"].admit(reserved.session_id, reserved.resume_token, PROMPT)
    finally:
        await fleet.close()


async def test_a_moved_session_is_not_overwritten_by_its_old_pod(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    redis = fleet.client()
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        other = next(d for n, d in fleet.pods.items() if n != grant.pod)
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 1))
        await owner.drain()  # its owner drains: a resume moves the session
        moved = await other.resume(grant.session_id, grant.resume_token)
        assert moved.pod == other.identity.name
        await other.admit(grant.session_id, grant.resume_token, PROMPT)
        await other.snapshot(conversation(grant.session_id, 5))
        await owner.snapshot(conversation(grant.session_id, 2))  # the old pod's late write is refused
        raw = await redis.get(fleet.keys.snapshot(grant.session_id))
        assert isinstance(raw, str) and '"turns":5' in raw
    finally:
        await redis.aclose()
        await fleet.close()


async def test_fleet_read_and_key_cleanup(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2, capacity=7)
    bystander = await start_fleet(redis_server.url, pods=1)
    redis = fleet.client()
    try:
        grants = [await fleet.pods["pod-0"].create({}) for _ in range(4)]
        live = grants[0]
        await fleet.pods[live.pod].admit(live.session_id, live.resume_token, PROMPT)
        fleet.pods[live.pod].store.wake.set()  # heartbeat now: the live count is written by heartbeats
        await async_wait_for(
            lambda: _live_total(redis, fleet), timeout=5, what="live session in the registry"
        )
        state = await read_fleet(redis, fleet.keys.namespace, fleet.keys.agent)
        assert [p.name for p in state.pods] == ["pod-0", "pod-1"]
        assert state.load == 4 and state.capacity == 14 and state.ready_pods == 2
        assert all(p.heartbeat_age_seconds < 5 and not p.stale for p in state.pods)
        for name in list(fleet.pods):  # the finalizer runs once the pods are gone
            await fleet.crash(name)
        deleted = await delete_agent_keys(redis, fleet.keys.namespace, fleet.keys.agent)
        assert deleted >= 2 + 2 + 4 + 1  # pods set, pod entries, pins, loads
        assert [k async for k in redis.scan_iter(match=fleet.keys.match_all)] == []
        assert [k async for k in redis.scan_iter(match=bystander.keys.match_all)] != []
    finally:
        await redis.aclose()
        await bystander.close()


async def _live_total(redis, fleet: Fleet) -> bool:
    state = await read_fleet(redis, fleet.keys.namespace, fleet.keys.agent)
    return state.live_sessions == 1


async def test_a_heartbeat_racing_a_release_does_not_resurrect_the_session(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=1)
    redis = fleet.client()
    try:
        pod = fleet.pods["pod-0"]
        admission = await pod.admit(None, None, PROMPT)
        sid = admission.session_id
        stale_view = pod.local.owned[sid]  # what a heartbeat built before the release landed
        await pod.release(sid, "completed")
        pod.local.owned[sid] = stale_view
        await pod.registry.heartbeat()
        assert not await redis.exists(fleet.keys.pin(sid))
        assert await redis.zscore(fleet.keys.load("pod-0"), sid) is None
        # after an outage (or with the pod's entry gone) the same heartbeat writes lost pins back
        await pod.registry.heartbeat(restore=True)
        assert await redis.hget(fleet.keys.pin(sid), "pod") == "pod-0"
        pod.local.owned.pop(sid)
    finally:
        await redis.aclose()
        await fleet.close()


async def test_a_call_cut_by_a_drain_deadline_resumes_on_another_pod(redis_server: RedisServer) -> None:
    fleet = await start_fleet(redis_server.url, pods=2)
    try:
        grant = await fleet.pods["pod-0"].create({})
        owner = fleet.pods[grant.pod]
        other = next(d for n, d in fleet.pods.items() if n != grant.pod)
        await owner.admit(grant.session_id, grant.resume_token, PROMPT)
        await owner.snapshot(conversation(grant.session_id, 4))
        await owner.drain()
        await owner.release(grant.session_id, "drain_deadline")
        moved = await other.resume(grant.session_id, grant.resume_token)
        assert moved.pod == other.identity.name
        admission = await other.admit(grant.session_id, grant.resume_token, PROMPT)
        assert admission.resumed and admission.conversation == conversation(grant.session_id, 4)
    finally:
        await fleet.close()
