"""Phone calls end to end: the fake carrier answers through the webhook, then streams over the WebSocket."""

from __future__ import annotations

import base64
import json
import time
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent_pod.config import AgentConfig
from agent_pod.runtime import Pod
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.transports.hub import LiveSession
from tests.support.carrier import (
    FakeCarrierCall,
    call_webhook,
    parse_answer,
    plivo_v3_headers,
    telnyx_headers,
    vonage_headers,
)
from tests.support.pod import PodFactory, offline_config, synthetic_config
from tests.support.wait import async_wait_for

CARRIERS = ["twilio", "telnyx", "plivo", "vonage"]
VONAGE_SECRET = "vonage-signature-secret-of-32-bytes!"


def phone_config(transcript: str = "hello there", **overrides: Any) -> AgentConfig:
    return synthetic_config(
        transcript, telephony={"enabled": True, **overrides.pop("telephony", {})}, **overrides
    )


async def answered_call(
    http: aiohttp.ClientSession, pod: Pod, carrier: str, **kwargs: Any
) -> FakeCarrierCall:
    status, body = await call_webhook(http, pod.http_url, carrier)
    assert status == 200, body
    call = FakeCarrierCall(carrier, parse_answer(carrier, body), **kwargs)
    await call.connect(http)
    return call


def live_session(pod: Pod) -> list[LiveSession]:
    assert pod.hub is not None
    return pod.hub.live()


def loud(pcm: bytes) -> bool:
    return bool(len(pcm)) and float(np.abs(np.frombuffer(pcm, dtype="<i2")).mean()) > 100


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_call_is_answered_through_the_webhook_and_the_stream(
    carrier: str, pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, carrier)
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=5, what="admitted")
        await call.speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await async_wait_for(lambda: _async(call.played_ms >= 400), timeout=10, what="answer played")
        assert loud(bytes(call.played))
        live = live_session(pod)[0]
        messages = live.session.conversation.messages
        assert [m.content for m in messages if m.role == "user"] == ["hello there"]
        await async_wait_for(lambda: _async(bool(call.marks_acked)), timeout=5, what="marks acknowledged")
        await call.stop()
        await async_wait_for(lambda: _async(live.finished.is_set()), timeout=5, what="call ended")
        assert live.end_reason == "client_ended"


async def _async(value: bool) -> bool:
    return value


async def test_barge_in_clears_the_carrier_and_keeps_only_what_was_played(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config("tell me a story"))
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, "twilio", playout_ms=300)
        await call.speak(ulaw_fixtures["story"], silence_after_ms=500)
        await async_wait_for(lambda: _async(call.played_ms >= 1500), timeout=10, what="story playing")
        live = live_session(pod)[0]
        session = live.session
        await call.speak(ulaw_fixtures["stop"], silence_after_ms=400)
        await async_wait_for(lambda: _async(bool(call.clears)), timeout=5, what="clear")
        stream = next(iter(pod.media_streams.streams))  # type: ignore[union-attr]
        assert stream.clear_seconds and max(stream.clear_seconds) <= 0.1
        await async_wait_for(lambda: _async(bool(session.turn_records)), timeout=5, what="turn record")
        record = session.turn_records[0]
        assert record.interrupted
        # The carrier held ~300 ms the agent had sent: they were cleared and do not count as played.
        assert record.played_ms <= call.played_ms + 1
        assert call.received_ms - record.played_ms >= 200
        assert record.played_text != record.sent_to_tts
        history = [m.content for m in session.conversation.messages if m.role == "assistant"]
        assert history[0] == record.played_text
        await call.stop()


async def test_the_recording_holds_only_the_agent_audio_the_carrier_played(
    pod_factory: PodFactory,
    ulaw_fixtures: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOICEFLEET_RECORDINGS_DIR", str(tmp_path))
    # The agent stops at the barge-in decision (no pause while the caller is judged), so the carrier
    # still holds ~300 ms it has not played: the clear drops them.
    config = phone_config(
        "tell me a story",
        recording={"enabled": True, "sampleRate": 8000},
        pipeline={"bargeIn": {"resumeFalseInterruptions": False}},
    )
    pod = await pod_factory(config)
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, "twilio", playout_ms=300)
        await call.speak(ulaw_fixtures["story"], silence_after_ms=500)
        await async_wait_for(lambda: _async(call.played_ms >= 1500), timeout=10, what="story playing")
        live = live_session(pod)[0]
        await call.speak(ulaw_fixtures["stop"], silence_after_ms=400)
        await async_wait_for(lambda: _async(bool(call.clears)), timeout=5, what="clear")
        await async_wait_for(lambda: _async(bool(live.session.turn_records)), timeout=5, what="turn record")
        await call.stop()
        await async_wait_for(lambda: _async(live.finished.is_set()), timeout=5, what="call ended")
    record = live.session.turn_records[0]
    info = live.session.recording_info
    assert record.interrupted and info is not None
    assert record.audio_start_ms is not None and record.audio_end_ms is not None
    # The carrier dropped ~300 ms at the clear: neither the record's span nor the right channel has them.
    assert call.received_ms - record.played_ms >= 200
    assert abs((record.audio_end_ms - record.audio_start_ms) - record.played_ms) <= 20
    with wave.open(info.location) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    # The interrupted turn's voice on the right channel, up to the next turn's (the caller's "stop stop"
    # is answered too).
    later = [r.audio_start_ms for r in live.session.turn_records[1:] if r.audio_start_ms is not None]
    right = audio[: (min(later, default=len(audio) // 8)) * 8, 1].astype(np.int32)
    voiced = np.flatnonzero(np.abs(right) > 1000)
    assert voiced.size
    assert abs(voiced[-1] / 8 - record.audio_end_ms) <= 30


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_dtmf_reaches_the_pipeline(carrier: str, pod_factory: PodFactory) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, carrier)
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=5, what="admitted")
        await call.dtmf("7")
        live = live_session(pod)[0]
        await async_wait_for(
            lambda: _async(any(m.content == "DTMF 7" for m in live.session.conversation.messages)),
            timeout=5,
            what="dtmf turn",
        )
        await call.stop()


async def test_a_reconnecting_stream_resumes_its_conversation(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, "twilio")
        await call.speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await async_wait_for(lambda: _async(call.played_ms >= 300), timeout=10, what="answer")
        first = live_session(pod)[0]
        await async_wait_for(
            lambda: _async(first.session.conversation.turns == 1), timeout=10, what="turn done"
        )
        await call.hang_up()  # the WebSocket drops mid-call
        await async_wait_for(lambda: _async(first.finished.is_set()), timeout=5, what="released")
        assert first.end_reason == "disconnected"
        again = FakeCarrierCall("twilio", call.answer)
        await again.connect(http)
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=5, what="resumed")
        resumed = live_session(pod)[0]
        assert resumed.resumed and resumed.id == first.id
        assert [m.content for m in resumed.session.conversation.messages if m.role == "user"] == [
            "hello there"
        ]
        # A second drop and reconnect with the same parameters resumes again.
        await again.hang_up()
        await async_wait_for(lambda: _async(resumed.finished.is_set()), timeout=5, what="released again")
        third = FakeCarrierCall("twilio", call.answer)
        await third.connect(http)
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=5, what="resumed again")
        assert live_session(pod)[0].id == first.id and live_session(pod)[0].resumed
        await third.stop()


async def test_a_call_with_jitter_and_loss_is_still_answered(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, "telnyx", jitter_ms=40, loss=0.05, seed=3)
        started = time.monotonic()
        await call.speak(ulaw_fixtures["hello"], silence_after_ms=700)
        await async_wait_for(lambda: _async(call.played_ms >= 300), timeout=10, what="answer played")
        assert time.monotonic() - started < 10
        await call.stop()


async def test_twilio_webhook_signatures(
    pod_factory: PodFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "twilio").mkdir()
    (tmp_path / "twilio" / "token").write_text("s3cret\n")
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    pod = await pod_factory(
        phone_config(telephony={"twilioAuthTokenSecretRef": {"name": "twilio", "key": "token"}})
    )
    async with aiohttp.ClientSession() as http:
        status, body = await call_webhook(http, pod.http_url, "twilio", auth_token="s3cret")
        assert status == 200 and "<Connect><Stream" in body
        status, body = await call_webhook(http, pod.http_url, "twilio", auth_token="wrong")
        assert status == 403 and "X-Twilio-Signature" in body
        status, _ = await call_webhook(http, pod.http_url, "twilio")
        assert status == 403


async def test_plivo_webhook_signatures(
    pod_factory: PodFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plivo").mkdir()
    (tmp_path / "plivo" / "token").write_text("MAtoken\n")
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    pod = await pod_factory(
        phone_config(telephony={"plivoAuthTokenSecretRef": {"name": "plivo", "key": "token"}})
    )
    url = f"{pod.http_url}/v1/telephony/plivo/voice"
    form = {"CallSid": "CA1", "From": "+15550100", "To": "+15550199"}
    good = plivo_v3_headers("MAtoken", url, form, "1234")
    async with aiohttp.ClientSession() as http:
        status, body = await call_webhook(http, pod.http_url, "plivo", auth_token="MAtoken")
        assert status == 200 and "<Stream" in body
        # A main account's and a subaccount's signature, comma-separated: one match is enough.
        both = {**good, "X-Plivo-Signature-V3": "c29tZW9uZSBlbHNl," + good["X-Plivo-Signature-V3"]}
        status, _ = await call_webhook(http, pod.http_url, "plivo", headers=both)
        assert status == 200
        other_nonce = {**good, "X-Plivo-Signature-V3-Nonce": "5678"}
        no_nonce = {"X-Plivo-Signature-V3": good["X-Plivo-Signature-V3"]}
        for headers in (plivo_v3_headers("wrong", url, form, "1234"), other_nonce, no_nonce, {}):
            status, body = await call_webhook(http, pod.http_url, "plivo", headers=headers)
            assert status == 403 and "X-Plivo-Signature-V3" in body
        # Another carrier's path is not checked with Plivo's token.
        status, _ = await call_webhook(http, pod.http_url, "twilio")
        assert status == 200


async def test_real_speech_survives_the_phone_line(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    """The offline pipeline (silero VAD, pocketsphinx, espeak-ng) hears espeak-ng speech sent as mu-law
    8 kHz, and its spoken answer reaches the caller through the codec."""
    pod = await pod_factory(offline_config(telephony={"enabled": True}))
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, pod, "twilio")
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=10, what="admitted")
        await call.speak(ulaw_fixtures["hello"], silence_after_ms=1000)
        live = live_session(pod)[0]
        await async_wait_for(lambda: _async(call.played_ms >= 500), timeout=30, what="answer played")
        user = [m.content for m in live.session.conversation.messages if m.role == "user"]
        assert user and "hello" in user[0].lower()
        assert loud(bytes(call.played))
        await call.stop()


async def test_telnyx_and_vonage_webhook_signatures(
    pod_factory: PodFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (tmp_path / "carriers").mkdir()
    (tmp_path / "carriers" / "telnyx").write_text(base64.b64encode(public).decode())
    (tmp_path / "carriers" / "vonage").write_text(VONAGE_SECRET)
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    telephony = {
        "telnyxPublicKeySecretRef": {"name": "carriers", "key": "telnyx"},
        "vonageSignatureSecretRef": {"name": "carriers", "key": "vonage"},
    }
    pod = await pod_factory(phone_config(telephony=telephony))
    body = urlencode({"CallSid": "CA1", "From": "+15550100", "To": "+15550199"}).encode()
    now = int(time.time())
    async with aiohttp.ClientSession() as http:
        status, answer = await call_webhook(
            http, pod.http_url, "telnyx", headers=telnyx_headers(private, body, now)
        )
        assert status == 200 and "<Connect><Stream" in answer
        stale = telnyx_headers(private, body, now - 3600)
        other = telnyx_headers(Ed25519PrivateKey.generate(), body, now)
        for headers in (stale, other, {}):
            status, answer = await call_webhook(http, pod.http_url, "telnyx", headers=headers)
            assert status == 403 and "telnyx-signature-ed25519" in answer
        status, answer = await call_webhook(
            http, pod.http_url, "vonage", headers=vonage_headers(VONAGE_SECRET, body)
        )
        assert status == 200 and json.loads(answer)[0]["action"] == "connect"
        for headers in (vonage_headers("w" * 32, body), vonage_headers(VONAGE_SECRET, b"other body"), {}):
            status, answer = await call_webhook(http, pod.http_url, "vonage", headers=headers)
            assert status == 403 and "JWT" in answer


async def test_a_secured_fleet_answers_calls_with_the_configured_key(
    pod_factory: PodFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With spec.auth.required the webhook creates sessions with telephony.credentialSecretRef's API key
    (its tenant); without that key every incoming call is refused."""
    (tmp_path / "api-keys").mkdir()
    (tmp_path / "phone").mkdir()
    key, entry = new_api_key("telco", ["sessions:create", "sessions:resume"])
    (tmp_path / "api-keys" / "keyring.json").write_text(json.dumps(Keyring(keys=[entry]).dump()))
    (tmp_path / "phone" / "api-key").write_text(key + "\n")
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    auth = {"required": True, "apiKeysSecretRef": {"name": "api-keys", "key": "keyring.json"}}
    secured = await pod_factory(
        phone_config(auth=auth, telephony={"credentialSecretRef": {"name": "phone", "key": "api-key"}})
    )
    keyless = await pod_factory(phone_config(auth=auth))
    async with aiohttp.ClientSession() as http:
        call = await answered_call(http, secured, "twilio")
        await async_wait_for(lambda: _async(len(live_session(secured)) == 1), timeout=5, what="admitted")
        await call.stop()
        status, body = await call_webhook(http, keyless.http_url, "twilio")
        assert status == 401 and "unauthenticated" in body, body
        assert live_session(keyless) == []
