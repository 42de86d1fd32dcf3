"""A draining pod moves its live WebRTC calls to another pod; the aiortc caller follows with a second peer
connection (real Redis, real WebRTC on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.runtime import Pod
from agent_pod.transports.opus import SAMPLE_RATE
from tests.support.pod import tone, wait_until
from tests.support.redis import RedisServer

from .fleet import Fleet


@pytest.fixture
async def fleet(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path, redis_server)
    try:
        yield fleet
    finally:
        await fleet.close()


def events(call: WebRTCCaller, kind: str) -> list[dict[str, Any]]:
    return [fields for _, k, fields in call.recorder.events if k == kind]


async def answers(call: WebRTCCaller, count: int, within: float = 10.0) -> list[str]:
    summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= count, within)
    return summary.agent_texts


def user_turns(pod: Pod) -> list[str]:
    assert pod.hub is not None
    [live] = pod.hub.live()
    return [m.content for m in live.session.conversation.messages if m.role == "user"]


async def test_a_draining_pod_moves_its_webrtc_call_and_the_conversation_goes_on(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with WebRTCCaller(a.http_url + "/v1/webrtc") as call:
        first_location = call.location
        for n, text in enumerate(["first", "second"], 1):
            call.send_text(text)
            await answers(call, n)
        drain = asyncio.ensure_future(a.drain())
        # the drain ends once the call has moved, not after the call (drainTimeoutSeconds is 60)
        await asyncio.wait_for(drain, 10)
        started = events(call, "session_started")
        assert len(started) == 2 and started[-1]["migrated"] and started[-1]["pod"] == "pod-b"
        assert started[-1]["session_id"] == started[0]["session_id"] == call.session_id
        assert call.location != first_location and call.location.startswith(b.http_url)
        [completed] = (await call.recorder.wait(lambda s: bool(events(call, "migration_completed")), 10)) and (
            events(call, "migration_completed")
        )
        assert completed["from_pod"] == "pod-a" and completed["gap_ms"] >= 0
        assert call.pods == ["pod-a", "pod-b"]
        assert call.recorder.summary.ended is None, "the old pod's 'migrated' end is not the call's end"
        call.send_text("third")
        texts = await answers(call, 3)
        assert texts == ["You said: first.", "You said: second.", "You said: third."]
        assert a.hub is not None and a.hub.live_sessions == 0
        assert b.hub is not None and b.hub.live_sessions == 1
        assert user_turns(b) == ["first", "second", "third"]
        # the old connection is closed once the old pod has closed its side
        old_pcs = [pc for pc, _ in call._retired]
        await wait_until(lambda: all(pc.connectionState == "closed" for pc in old_pcs), 5, "old pc closed")
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 5)
    assert call.recorder.summary.ended == "client_ended"
    await wait_until(lambda: b.hub is not None and b.hub.live_sessions == 0, 5, "pod B to end the call")


async def test_words_said_while_the_call_moves_are_heard_once_by_the_new_pod(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with WebRTCCaller(a.http_url + "/v1/webrtc", follow_migrations=False) as call:
        call.send_text("first")
        await answers(call, 1)
        drain = asyncio.ensure_future(a.drain())
        summary = await call.recorder.wait(lambda s: bool(events(call, "migration_offer")), 10)
        [offer] = events(call, "migration_offer")
        assert offer["pod"] == "pod-b"
        # The call is frozen on pod A now: the caller starts to speak there, and moves mid-utterance.
        old_microphone = call.microphone
        speech = tone(SAMPLE_RATE, 1.6, silence_after=1.0)
        speech_frames = int(1.6 * 1000 / 20)
        speaking = asyncio.ensure_future(call.play(speech))
        await wait_until(lambda: old_microphone.queued_frames >= 15, 5, "the first 0.3 s said to pod A")
        assert await call.follow(offer)
        assert old_microphone.queued_frames < speech_frames, "the move happened mid-utterance"
        await speaking
        new_microphone = call.microphone
        assert new_microphone is not old_microphone and new_microphone.queued_frames > 0
        await asyncio.wait_for(drain, 10)
        summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= 2, 10)
        [completed] = events(call, "migration_completed")
        assert completed["replayed_ms"] > 0, "pod B replayed what pod A held"
        assert summary.transcripts == ["first", "hello there"], "the utterance was heard once, whole"
        assert summary.agent_texts == ["You said: first.", "You said: hello there."]
        assert summary.ended is None
        assert a.hub is not None and a.hub.live_sessions == 0
        assert user_turns(b) == ["first", "hello there"]
        await call.end()
