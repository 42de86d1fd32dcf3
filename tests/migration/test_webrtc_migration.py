"""A draining pod moves its live WebRTC calls to another pod; the aiortc caller follows with a second peer
connection (real Redis, real WebRTC on loopback)."""

from __future__ import annotations

import asyncio

import aiohttp

from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.transports.opus import SAMPLE_RATE
from tests.support.migration import Fleet, answers, events, user_turns
from tests.support.pod import loopback_offer, tone, wait_until


async def test_a_draining_pod_moves_its_webrtc_call_and_the_conversation_goes_on(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with WebRTCCaller(a.http_url + "/v1/webrtc") as call:
        first_location, first_pc = call.location, call.pc
        for n, text in enumerate(["first", "second"], 1):
            call.send_text(text)
            await answers(call, n)
        drain = asyncio.ensure_future(a.drain())
        # the drain ends once the call has moved, not after the call (drainTimeoutSeconds is 60)
        await asyncio.wait_for(drain, 10)
        started = events(call, "session_started")
        assert len(started) == 2 and started[-1]["migrated"] and started[-1]["pod"] == "pod-b"
        assert started[-1]["session_id"] == started[0]["session_id"] == call.session_id
        assert call.location is not None and call.location != first_location
        assert call.location.startswith(b.http_url) and call.pc is not first_pc
        await call.recorder.wait(lambda _: bool(events(call, "migration_completed")), 10)
        [completed] = events(call, "migration_completed")
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
        await wait_until(lambda: first_pc.connectionState == "closed", 5, "the old connection to close")
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 5)
    assert call.recorder.summary.ended == "client_ended"
    await wait_until(lambda: b.hub is not None and b.hub.live_sessions == 0, 5, "pod B to end the call")


async def test_words_said_while_the_call_moves_are_heard_once_by_the_new_pod(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with WebRTCCaller(a.http_url + "/v1/webrtc", auto_follow=False) as call:
        call.send_text("first")
        await answers(call, 1)
        drain = asyncio.ensure_future(a.drain())
        await call.recorder.wait(lambda _: bool(events(call, "migration_offer")), 10)
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
        await answers(call, 2)
        [completed] = events(call, "migration_completed")
        assert completed["from_pod"] == "pod-a" and completed["replayed_ms"] > 0, "B replayed what A held"
        # A typed turn after the answer: a second hearing of the utterance would have come before it.
        call.send_text("third")
        texts = await answers(call, 3)
        summary = call.recorder.summary
        assert summary.transcripts == ["first", "hello there", "third"], "the utterance was heard once"
        assert texts[0] == "You said: first." and texts[2] == "You said: third."
        assert summary.ended is None
        assert a.hub is not None and a.hub.live_sessions == 0
        assert user_turns(b) == ["first", "hello there", "third"]
        assert call.pods == ["pod-a", "pod-b"]
        await call.end()


async def test_a_caller_that_cannot_follow_says_so_and_stays_on_the_old_pod(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    async with WebRTCCaller(a.http_url + "/v1/webrtc", auto_follow=False) as call:
        first_pc = call.pc
        drain = asyncio.ensure_future(a.drain())
        await call.recorder.wait(lambda _: bool(events(call, "migration_offer")), 10)
        [offer] = events(call, "migration_offer")
        call.send_text("said while frozen")  # held by pod A, heard there once the move is called off
        assert not await call.follow({**offer, "migration_token": "forged"})
        assert "401" in call.follow_error
        assert call.pc is first_pc and len(call.pods) == 1
        texts = await answers(call, 1)
        assert texts == ["You said: said while frozen."]
        assert a.hub is not None and a.hub.live_sessions == 1
        assert b.hub is not None and b.hub.live_sessions == 0
        assert not drain.done()
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 5)
        await asyncio.wait_for(drain, 10)
    assert call.recorder.summary.ended == "client_ended"


async def test_a_webrtc_caller_that_does_not_follow_moves_is_served_until_it_ends(fleet: Fleet) -> None:
    a = await fleet.add("pod-a")
    await fleet.add("pod-b")
    async with (
        WebRTCCaller(a.http_url + "/v1/webrtc") as mover,
        WebRTCCaller(a.http_url + "/v1/webrtc", follow_migrations=False) as stayer,
    ):
        drain = asyncio.ensure_future(a.drain())
        await mover.recorder.wait(lambda _: bool(events(mover, "migration_completed")), 10)
        stayer.send_text("still here")
        assert await answers(stayer, 1) == ["You said: still here."]
        assert len(stayer.pods) == 1 and not events(stayer, "migration_offer")
        assert not drain.done()  # the drain waits for the call it could not move, as without migration
        await stayer.end()
        await asyncio.wait_for(drain, 10)


async def test_signaling_answers_cross_origin_requests(fleet: Fleet) -> None:
    """A web page served by one pod follows its call to another pod: another origin."""
    pod = await fleet.add("pod-a")
    origin = {"Origin": "http://127.0.0.1:1"}
    async with aiohttp.ClientSession() as http:
        for path, method in [
            ("/v1/webrtc", "POST"),
            ("/v1/sessions/abc/webrtc", "POST"),
            ("/v1/webrtc/abc", "DELETE"),
        ]:
            preflight = {
                **origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type,voicefleet-migration-token",
            }
            async with http.options(pod.http_url + path, headers=preflight) as response:
                assert response.status == 204, path
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert method in response.headers["Access-Control-Allow-Methods"]
                allowed = response.headers["Access-Control-Allow-Headers"].lower()
                assert {"content-type", "authorization", "voicefleet-migration-token"} <= {
                    h.strip() for h in allowed.split(",")
                }
                assert "Access-Control-Allow-Credentials" not in response.headers
        async with http.post(pod.http_url + "/v1/webrtc", json={"sdp": ""}, headers=origin) as response:
            assert response.status == 400  # errors too are readable cross-origin
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        async with http.delete(pod.http_url + "/v1/webrtc/nope", headers=origin) as response:
            assert response.status == 404
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        async with http.options(pod.http_url + "/healthz", headers=origin) as response:
            assert "Access-Control-Allow-Origin" not in response.headers  # only signaling is open
        async with loopback_offer() as offer:
            async with http.post(pod.http_url + "/v1/webrtc", json=offer, headers=origin) as response:
                assert response.status == 201
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
                assert exposed == {
                    "Location",
                    "Retry-After",
                    "Voicefleet-Session-Id",
                    "Voicefleet-Resume-Token",
                }
                location = response.headers["Location"]
            async with http.delete(pod.http_url + location, headers=origin) as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Origin"] == "*"
