"""Slots held by callers who never really call are given back fast (attacker finding 1).

A pod with 4 slots and a real Redis. The holds are shortened for the test (reservation 2 s, unused
hold 2 s, WebRTC connect deadline 1 s); the rule under test is which sessions get the short hold
and which keep the full resume window.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.runtime import Pod
from agent_pod.sessions import directory as directory_module
from agent_pod.sessions.tuning import DirectoryTuning
from agent_pod.settings import PodSettings
from agent_pod.transports import webrtc as webrtc_module
from tests.support.pod import loopback_offer, pod_ports, synthetic_config
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for

HOLD_SECONDS = 2.0


@pytest.fixture
async def small_pod(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Pod]:
    monkeypatch.setattr(directory_module, "UNUSED_HOLD_SECONDS", HOLD_SECONDS)
    monkeypatch.setattr(webrtc_module, "CONNECT_TIMEOUT_SECONDS", 1.0)
    key_file = tmp_path / "resume.key"
    key_file.write_bytes(b"holds-test-key-0123456789abcdef")
    config = synthetic_config(
        agent="holds-" + uuid.uuid4().hex[:6], transport={"webrtc": {"enabled": True}}, sessionsPerPod=4
    )
    settings = PodSettings(
        bind_host="127.0.0.1", pod_name="small", redis_url=redis_server.url, resume_key_file=key_file
    )
    pod = Pod(settings, config, pod_ports(), tuning=DirectoryTuning(reservation_seconds=HOLD_SECONDS))
    await pod.start()
    try:
        yield pod
    finally:
        await pod.stop()


async def create(pod: Pod) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.post(pod.http_url + "/v1/sessions", json={}) as r:
        return r.status, dict(r.headers), await r.json()


async def created(pod: Pod) -> Any:
    status, _, body = await create(pod)
    return body if status == 201 else None


async def test_streams_opened_and_dropped_give_their_slots_back_fast(small_pod: Pod) -> None:
    # One caller really talks, then loses its connection: it keeps its slot for the resume window.
    talker = GrpcCaller(small_pod.grpc_address)
    await talker.open()
    talker.send_text("hello")
    await talker.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
    talker.drop()
    # Three open a stream and vanish without a word.
    for _ in range(3):
        caller = GrpcCaller(small_pod.grpc_address)
        await caller.open()
        caller.drop()
    hub = small_pod.hub
    assert hub is not None
    await async_wait_for(lambda: _no_live(small_pod), timeout=5, what="every stream to drop")
    status, headers, _ = await create(small_pod)
    assert status == 503
    assert int(headers["Retry-After"]) <= HOLD_SECONDS + 1  # what the hold really is, not a guess
    # The silent three come back within the short hold (plus a heartbeat), not the 120 s window.
    grants = [await async_wait_for(lambda: created(small_pod), timeout=HOLD_SECONDS + 6, what="a freed slot")]
    grants += [await async_wait_for(lambda: created(small_pod), timeout=5) for _ in range(2)]
    assert len({g["sessionId"] for g in grants}) == 3
    # The talker's call is still resumable, history and all.
    resumed = GrpcCaller(
        small_pod.grpc_address,
        session_id=talker.session_id,
        resume_token=talker.recorder.summary.resume_token or "",
    )
    await resumed.open()
    try:
        started = [f for _, k, f in resumed.recorder.events if k == "session_started"]
        assert started[0]["resumed"] and int(started[0]["restored_turns"]) == 1
    finally:
        await resumed.close()
        await talker.close()


async def _no_live(pod: Pod) -> bool:
    return pod.hub is not None and pod.hub.live_sessions == 0


async def test_unused_grants_give_their_slots_back_after_the_reservation(small_pod: Pod) -> None:
    for _ in range(4):
        assert (await create(small_pod))[0] == 201
    status, headers, body = await create(small_pod)
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert int(headers["Retry-After"]) <= HOLD_SECONDS + 1
    await async_wait_for(
        lambda: created(small_pod), timeout=HOLD_SECONDS + 5, what="a slot after the reservation"
    )


async def test_an_offer_that_never_connects_gives_its_slot_back(small_pod: Pod) -> None:
    def ended(reason: str) -> float:
        labels = {"transport": "webrtc", "reason": reason}
        return REGISTRY.get_sample_value("voicefleet_transport_sessions_total", labels) or 0.0

    before = ended("never_connected")
    async with loopback_offer() as offer, aiohttp.ClientSession() as http:
        async with http.post(small_pod.http_url + "/v1/webrtc", json=offer) as r:
            assert r.status == 201
            answer = await r.json()
        # The caller never applies the answer: no ICE, no DTLS, no media.
        await async_wait_for(lambda: _no_live(small_pod), timeout=5, what="the unconnected offer to end")
        assert ended("never_connected") == before + 1
        resume = f"{small_pod.http_url}/v1/sessions/{answer['session_id']}/resume"
        async with http.post(resume, json={"resumeToken": answer["resume_token"]}) as r:
            assert r.status == 404  # not kept for resume: nothing to come back to
