"""The pure parts of telephony: the G.711 codec, the mark ledger, carrier message parsing, the webhook's
instructions, and taking back unheard frames from a turn's playback."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from agent_pod.config import TelephonySpec
from agent_pod.pipeline.playback import TurnPlayback
from agent_pod.sessions.directory import Grant
from agent_pod.telephony import mulaw
from agent_pod.telephony.carriers import (
    BadInput,
    Dtmf,
    MarkPlayed,
    MediaIn,
    StreamStart,
    StreamStopped,
    codec_for,
)
from agent_pod.telephony.marks import MarkLedger
from agent_pod.telephony.signatures import plivo_v3_signature, plivo_v3_valid, twilio_signature
from agent_pod.telephony.webhook import instructions, stream_url
from tests.support.carrier import parse_answer, twilio_sign


def test_mulaw_known_codes_and_round_trip() -> None:
    assert mulaw.decode(bytes([0xFF, 0x7F, 0x80, 0x00])) == np.array([0, 0, 32124, -32124], "<i2").tobytes()
    assert mulaw.encode(np.array([0, 32767, -32768], "<i2").tobytes()) == bytes([0xFF, 0x80, 0x00])
    x = (np.sin(np.arange(8000) / 8) * 20000).astype("<i2")
    y = np.frombuffer(mulaw.decode(mulaw.encode(x.tobytes())), "<i2").astype(float)
    # G.711 keeps ~38 dB SNR on a loud signal.
    snr = 10 * np.log10(np.mean(x.astype(float) ** 2) / np.mean((x - y) ** 2))
    assert snr > 35
    assert len(mulaw.encode(bytes(mulaw.FRAME_SAMPLES * 2))) == 160


def test_mark_ledger_counts_only_acknowledged_audio() -> None:
    ledger = MarkLedger(interval_frames=5)
    marks = [name for _ in range(12) if (name := ledger.frame()) is not None]
    assert len(marks) == 2  # after frames 5 and 10
    assert ledger.silence() is not None  # the last 2 frames get a mark of their own
    assert ledger.silence() is None
    assert ledger.acknowledged(marks[0]) and ledger.played == 5
    assert not ledger.acknowledged("vf-unknown")
    assert ledger.clear() == 7  # frames 6-12 were never reported played
    assert not ledger.acknowledged(marks[1])  # an answer to a cleared mark is no proof of play
    assert ledger.played == 5 and ledger.unacknowledged == 0


def _start(carrier: str, encoding: str | None = None) -> str | bytes:
    if carrier == "twilio":
        fmt = {"encoding": encoding or "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {"streamSid": "MZ1", "mediaFormat": fmt, "customParameters": {"sessionId": "s"}}
        return json.dumps({"event": "start", "streamSid": "MZ1", "start": start})
    if carrier == "telnyx":
        fmt = {"encoding": encoding or "PCMU", "sample_rate": 8000, "channels": 1}
        start = {"media_format": fmt, "custom_parameters": {"sessionId": "s"}}
        return json.dumps({"event": "start", "stream_id": "MZ1", "start": start})
    if carrier == "plivo":
        fmt = {"encoding": encoding or "audio/x-mulaw", "sampleRate": 8000}
        return json.dumps({"event": "start", "start": {"streamId": "MZ1", "mediaFormat": fmt}})
    return json.dumps(
        {"event": "websocket:connected", "content-type": encoding or "audio/l16;rate=16000", "sessionId": "s"}
    )


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo", "vonage"])
def test_each_carrier_parses_its_messages_and_builds_its_replies(carrier: str) -> None:
    codec = codec_for(carrier)  # type: ignore[arg-type]
    start = codec.parse(_start(carrier))
    assert isinstance(start, StreamStart)
    assert start.sample_rate == (16000 if carrier == "vonage" else 8000)
    if carrier != "plivo":
        assert start.parameters["sessionId"] == "s"
    pcm = np.full(start.sample_rate // 50, 1000, "<i2").tobytes()
    if carrier == "vonage":
        assert codec.parse(pcm) == MediaIn(pcm)
        assert codec.parse(json.dumps({"event": "websocket:dtmf", "digit": "5"})) == Dtmf("5")
        assert codec.parse(json.dumps({"event": "websocket:notify", "payload": {"name": "m"}})) == MarkPlayed(
            "m"
        )
        assert codec.media(pcm) == pcm
        assert json.loads(codec.clear()) == {"action": "clear"}
        return
    payload = base64.b64encode(mulaw.encode(pcm)).decode()
    media = codec.parse(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert isinstance(media, MediaIn) and len(media.pcm) == 320
    assert codec.parse(json.dumps({"event": "dtmf", "dtmf": {"digit": "#"}})) == Dtmf("#")
    assert isinstance(codec.parse(json.dumps({"event": "stop"})), StreamStopped)
    out = json.loads(codec.media(pcm))
    assert mulaw.decode(base64.b64decode(out["media"]["payload"])) == mulaw.decode(mulaw.encode(pcm))
    clear = json.loads(codec.clear())
    assert clear["event"] == ("clearAudio" if carrier == "plivo" else "clear")
    mark = json.loads(codec.mark("m1"))
    assert mark["event"] == ("checkpoint" if carrier == "plivo" else "mark")
    played = (
        {"event": "playedStream", "name": "m1"}
        if carrier == "plivo"
        else {"event": "mark", "mark": {"name": "m1"}}
    )
    assert codec.parse(json.dumps(played)) == MarkPlayed("m1")


@pytest.mark.parametrize(
    ("carrier", "message", "reason"),
    [
        ("twilio", "not json", "not_json"),
        ("twilio", "[1, 2]", "not_json"),
        ("twilio", b"\x00\x01", "binary_frame"),
        ("twilio", '{"event": "bogus"}', "unknown_event"),
        ("twilio", '{"event": "media"}', "invalid_message"),
        ("twilio", '{"event": "media", "media": {"payload": "!!"}}', "invalid_base64"),
        ("twilio", '{"event": "media", "media": {"payload": ""}}', "empty_payload"),
        ("vonage", b"\x00\x01", "media_before_start"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(carrier: str, message: str | bytes, reason: str) -> None:
    with pytest.raises(BadInput) as refused:
        codec_for(carrier).parse(message)  # type: ignore[arg-type]
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("carrier", "encoding"),
    [("twilio", "audio/x-alaw"), ("telnyx", "G722"), ("plivo", "audio/x-l16"), ("vonage", "audio/opus")],
)
def test_a_wrong_codec_is_refused(carrier: str, encoding: str) -> None:
    with pytest.raises(BadInput) as refused:
        codec_for(carrier).parse(_start(carrier, encoding))  # type: ignore[arg-type]
    assert refused.value.reason == "wrong_codec"


GRANT = Grant(
    session_id="sess-1", resume_token="tok&<1>", pod="pod-a", grpc_address="", token_expires_unix=0,
    webrtc_url="http://10.0.0.7:8080/v1/sessions/sess-1/webrtc",
)  # fmt: skip


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo", "vonage"])
def test_webhook_instructions_point_at_the_chosen_pod(carrier: str) -> None:
    url = stream_url(TelephonySpec(), GRANT, carrier)  # type: ignore[arg-type]
    assert url == f"ws://10.0.0.7:8080/v1/telephony/{carrier}/stream"
    body, _ = instructions(carrier, url, GRANT)  # type: ignore[arg-type]
    answer = parse_answer(carrier, body)  # the fake carrier reads it like the carrier would
    assert answer.url.startswith(url)
    if carrier == "plivo":
        assert "sessionId=sess-1" in answer.url and "resumeToken=tok%26%3C1%3E" in answer.url
    else:
        assert answer.parameters == {"sessionId": "sess-1", "resumeToken": "tok&<1>"}


def test_stream_url_template_and_twilio_signature() -> None:
    spec = TelephonySpec(stream_url_template="wss://voice.example.com/{pod}/v1/telephony/{carrier}/stream")
    assert stream_url(spec, GRANT, "twilio") == "wss://voice.example.com/pod-a/v1/telephony/twilio/stream"
    params = {"CallSid": "CA1", "Digits": "1234", "To": "+18005551212"}
    url = "https://example.com/v1/telephony/twilio/voice"
    assert twilio_signature("tok", url, params) == twilio_sign("tok", url, params)
    assert twilio_signature("tok", url, params) != twilio_signature("tok", url + "?x=1", params)


# Known answers computed with Plivo's own SDK (plivo 4.63.0, plivo.utils.signature_v3: get_signature_v3 of
# construct_post_url), auth token "MAtoken123", nonce "12345678901234567890".
PLIVO_URL = "https://voice.example.com/v1/telephony/plivo/voice"
PLIVO_CALL = {"CallUUID": "c0ffee", "From": "+15550100", "To": "+15550199", "Direction": "inbound"}


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        (PLIVO_URL, PLIVO_CALL, "I7/EeXeJ50Ns6T5UV+GkEYVIdlFZkSykgt6xMdAox98="),
        (
            PLIVO_URL + "?b=2&a=1&a=0",
            {"CallUUID": "c0ffee", "From": "+15550100"},
            "gDVO2I1XSgjL+Q9/sFG8WxgcxZO3s5H9PTgV2pLcWic=",
        ),
        (PLIVO_URL + "?x=1", {}, "ZbIq2z6ouiv2DqF8+tpJWdtGARzACGpSKR1zQhG0i+I="),
        (PLIVO_URL, {}, "oBmmEtXUfI6XP2TD3MUAT4K6wKJ4rcHawyvCAs43hj8="),
    ],
)
def test_plivo_v3_signature_matches_plivos_sdk(url: str, params: dict[str, str], expected: str) -> None:
    assert plivo_v3_signature("MAtoken123", url, params, "12345678901234567890") == expected
    assert plivo_v3_valid("MAtoken123", url, params, "12345678901234567890", f"x,{expected}")
    assert not plivo_v3_valid("MAtoken123", url, params, "12345678901234567891", expected)


def test_unplay_takes_back_the_newest_frames() -> None:
    playback = TurnPlayback(sample_rate=8000, frame_samples=160, keep_played_audio=True)
    first = playback.add_piece("one two three four", 0)
    for _ in range(10):
        playback.push(first, bytes(320), 160)
    playback.piece_done(first)
    for _ in range(8):
        playback.pull()
    assert playback.played_ms == 160 and len(playback.played_audio) == 8 * 320
    assert playback.unplay(3) == 3
    assert playback.played_ms == 100 and len(playback.played_audio) == 5 * 320
    assert first.played_samples == 5 * 160
    assert playback.played_text() == "one two"
    assert playback.unplay(100) == 5 and playback.played_text() == ""
