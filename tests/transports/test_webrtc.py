"""WebRTC end to end with an aiortc caller on loopback: audio both ways, events, signaling errors."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.transports.ice import candidate_ports
from tests.support.pod import synthetic_config, tone


async def test_call_with_audio_both_ways_and_events_on_the_data_channel(pod_factory):
    pod = await pod_factory(synthetic_config(transcript="hello there"))
    assert pod.webrtc is not None
    async with aiohttp.ClientSession() as http:
        caller = WebRTCCaller(pod.http_url + "/v1/webrtc", http=http)
        async with caller:
            await caller.play(tone(48000, 0.6, silence_after=0.8), speech_ends=[30])
            summary = await caller.recorder.wait(lambda s: bool(s.agent_texts) and s.audible_frames >= 10, 20)
            assert summary.transcripts == ["hello there"], "the caller's Opus audio reached the session"
            assert summary.agent_texts[0].startswith("Hello")
            assert summary.turn_metrics, "turn metrics arrive on the data channel"
            assert summary.peak_level > 3000, "the agent's tone came back through Opus"
            caller.send_text("what is the weather")
            summary = await caller.recorder.wait(lambda s: len(s.agent_texts) >= 2, 20)
            assert summary.transcripts[-1] == "what is the weather"
            caller.send_channel("{not json")
            await caller.recorder.wait(lambda s: bool(s.errors), 10)
            assert "data channel message refused" in summary.errors[0]
            await caller.end()
            await caller.recorder.wait(lambda s: s.ended is not None, 10)
        assert caller.recorder.summary.ended == "client_ended"
    low, high = pod.ports.udp_min, pod.ports.udp_max
    ports = candidate_ports(caller.answer_sdp)
    assert ports and all(low <= p <= high for p in ports), (ports, low, high)
    assert pod.hub is not None and pod.hub.live_sessions == 0


async def test_malformed_offers_get_400_and_the_pod_carries_on(pod_factory):
    pod = await pod_factory()
    url = pod.http_url + "/v1/webrtc"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"data": "v=0\r\nthis is not sdp\r\n", "headers": {"Content-Type": "application/sdp"}}, "no audio"),
        (
            {
                "data": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nbroken",
                "headers": {"Content-Type": "application/sdp"},
            },
            "malformed SDP",
        ),
        ({"data": "{", "headers": {"Content-Type": "application/json"}}, "invalid offer JSON"),
        ({"json": {"sdp": "", "type": "offer"}}, "invalid offer JSON"),
        ({"json": {"sdp": "m=audio", "type": "answer"}}, "invalid offer JSON"),
        ({"data": "hello", "headers": {"Content-Type": "text/plain"}}, "application/sdp"),
    ]
    async with aiohttp.ClientSession() as http:
        for kwargs, message in bad:
            async with http.post(url, **kwargs) as response:
                body = await response.json()
                assert response.status == 400, (kwargs, body)
                assert message in body["error"]["message"], (message, body)
        # an offer over the body limit never reaches signaling: 413 (tests/transports/test_http_limits.py)
        oversized = {"Content-Type": "application/sdp"}
        async with http.post(url, data="x" * 70000, headers=oversized) as response:
            assert response.status == 413
            assert "larger than" in (await response.json())["error"]["message"]
        async with http.delete(pod.http_url + "/v1/webrtc/nope") as response:
            assert response.status == 404
        async with http.get(pod.http_url + "/readyz") as response:
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{pod.metrics_port}/metrics") as response:
            text = await response.text()
        assert 'voicefleet_transport_bad_input_total{reason="offer",transport="webrtc"}' in text
    assert pod.hub is not None and pod.hub.live_sessions == 0
    async with WebRTCCaller(url) as caller:
        caller.send_text("hello")
        await caller.recorder.wait(lambda s: bool(s.agent_texts), 20)


async def test_sdp_offer_as_application_sdp_gets_an_sdp_answer(pod_factory):
    pod = await pod_factory()
    caller = WebRTCCaller(pod.http_url + "/v1/webrtc")
    try:
        caller.pc.addTransceiver(caller.microphone, direction="sendrecv")
        await caller.pc.setLocalDescription(await caller.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                pod.http_url + "/v1/webrtc",
                data=caller.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as response,
        ):
            assert response.status == 201
            assert response.content_type == "application/sdp"
            assert (await response.text()).startswith("v=0")
            location = response.headers["Location"]
            assert response.headers["Voicefleet-Session-Id"]
            assert response.headers["Voicefleet-Resume-Token"]
            async with http.delete(pod.http_url + location) as hangup:
                assert hangup.status == 204
    finally:
        await caller.pc.close()


async def test_signaling_refuses_a_forged_resume_token(pod_factory):
    pod = await pod_factory()
    caller = WebRTCCaller(pod.http_url + "/v1/sessions/abc/webrtc")
    try:
        caller.pc.addTransceiver(caller.microphone, direction="sendrecv")
        await caller.pc.setLocalDescription(await caller.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                caller.url,
                data=json.dumps(
                    {"sdp": caller.pc.localDescription.sdp, "type": "offer", "resume_token": "x"}
                ),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "unauthenticated"
    finally:
        await caller.pc.close()


async def test_a_session_granted_by_the_session_api_connects_at_its_webrtc_url(pod_factory):
    pod = await pod_factory()
    async with aiohttp.ClientSession() as http:
        async with http.post(pod.http_url + "/v1/sessions", json={}) as response:
            assert response.status == 201
            grant = await response.json()
        assert grant["webrtcUrl"] == f"{pod.http_url}/v1/sessions/{grant['sessionId']}/webrtc"
        caller = WebRTCCaller(grant["webrtcUrl"], resume_token=grant["resumeToken"], http=http)
        async with caller:
            assert caller.session_id == grant["sessionId"]
            caller.send_text("hello")
            await caller.recorder.wait(lambda s: bool(s.agent_texts), 20)
