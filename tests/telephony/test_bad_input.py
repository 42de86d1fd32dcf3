"""Bad input on carrier streams: each gets a clear error (a close code and reason, or an error event), the
call itself (when there is one) goes on, and a healthy call on the same pod is untouched."""

from __future__ import annotations

import base64

import aiohttp

from agent_pod.transports import transport_metrics
from tests.support.carrier import FakeCarrierCall, call_webhook, parse_answer
from tests.support.pod import PodFactory
from tests.support.wait import async_wait_for
from tests.telephony.test_calls import _async, answered_call, live_session, phone_config


def bad_inputs(carrier: str, reason: str) -> float:
    return transport_metrics.BAD_INPUT_TOTAL.labels(carrier, reason)._value.get()


async def test_garbage_unknown_events_and_bad_payloads_get_errors_and_the_calls_go_on(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config())
    before = {
        r: bad_inputs("twilio", r) for r in ("not_json", "unknown_event", "invalid_base64", "binary_frame")
    }
    async with aiohttp.ClientSession() as http:
        healthy = await answered_call(http, pod, "plivo")
        noisy = await answered_call(http, pod, "twilio")
        await async_wait_for(lambda: _async(len(live_session(pod)) == 2), timeout=5, what="both admitted")
        await noisy.send_raw("}{ not json")
        await noisy.send_raw(b"\x00\x01garbage")
        await noisy.send_json({"event": "teleport", "to": "mars"})
        await noisy.send_json({"event": "media", "media": {"payload": "@@@not-base64@@@"}})
        await async_wait_for(lambda: _async(len(noisy.errors) == 4), timeout=5, what="four error events")
        assert [e["code"] for e in noisy.errors] == [
            "not_json",
            "binary_frame",
            "unknown_event",
            "invalid_base64",
        ]
        assert "teleport" in noisy.errors[2]["message"]
        for reason, count in before.items():
            assert bad_inputs("twilio", reason) == count + 1, reason
        # Both calls are still served: each is answered.
        await noisy.speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await healthy.speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await async_wait_for(
            lambda: _async(noisy.played_ms > 200 and healthy.played_ms > 200),
            timeout=10,
            what="both answered",
        )
        assert not noisy.closed.is_set() and not healthy.closed.is_set()
        await noisy.stop()
        await healthy.stop()


async def test_a_wrong_codec_is_refused_with_a_close_reason(pod_factory: PodFactory) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        for carrier, encoding in (
            ("twilio", "audio/x-alaw"),
            ("telnyx", "OPUS"),
            ("vonage", "audio/l16;rate=44100"),
        ):
            _status, body = await call_webhook(http, pod.http_url, carrier)
            call = FakeCarrierCall(carrier, parse_answer(carrier, body))
            await call.connect(http, start=False)
            await call.start(encoding=encoding)
            await async_wait_for(lambda c=call: _async(c.closed.is_set()), timeout=5, what="closed")  # type: ignore[misc]
            assert call.close_code == 1003, carrier
            assert "unsupported" in call.close_reason
        assert not live_session(pod)


async def test_a_stream_without_start_is_closed_after_the_timeout(pod_factory: PodFactory) -> None:
    pod = await pod_factory(phone_config(telephony={"startTimeoutSeconds": 0.5}))
    before = bad_inputs("twilio", "no_start")
    async with aiohttp.ClientSession() as http:
        _status, body = await call_webhook(http, pod.http_url, "twilio")
        call = FakeCarrierCall("twilio", parse_answer("twilio", body))
        await call.connect(http, start=False)
        await call.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await async_wait_for(lambda: _async(call.closed.is_set()), timeout=5, what="closed")
        assert call.close_code == 1008 and "no start" in call.close_reason
        assert bad_inputs("twilio", "no_start") == before + 1


async def test_a_stream_without_session_parameters_is_refused(pod_factory: PodFactory) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        _status, body = await call_webhook(http, pod.http_url, "twilio")
        answer = parse_answer("twilio", body)
        answer.parameters = {}
        call = FakeCarrierCall("twilio", answer)
        await call.connect(http)
        await async_wait_for(lambda: _async(call.closed.is_set()), timeout=5, what="closed")
        assert call.close_code == 1008 and "sessionId" in call.close_reason
        answer.parameters = {"sessionId": "nope", "resumeToken": "forged"}
        call = FakeCarrierCall("twilio", answer)
        await call.connect(http)
        await async_wait_for(lambda: _async(call.closed.is_set()), timeout=5, what="closed")
        assert call.close_code == 1008 and call.close_reason


async def test_a_carrier_that_drops_mid_word_leaves_the_session_resumable_and_others_unharmed(
    pod_factory: PodFactory, ulaw_fixtures: dict[str, bytes]
) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        healthy = await answered_call(http, pod, "telnyx")
        dropping = await answered_call(http, pod, "twilio")
        await async_wait_for(lambda: _async(len(live_session(pod)) == 2), timeout=5, what="both admitted")
        victim = next(live for live in live_session(pod) if live.transport == "twilio")
        await dropping.speak(ulaw_fixtures["hello"][: len(ulaw_fixtures["hello"]) // 2])  # half a word
        await dropping.hang_up()
        await async_wait_for(
            lambda: _async(victim.finished.is_set()), timeout=5, what="dropped call released"
        )
        assert victim.end_reason == "disconnected"
        await healthy.speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await async_wait_for(lambda: _async(healthy.played_ms > 200), timeout=10, what="other call answered")
        again = FakeCarrierCall("twilio", dropping.answer)  # the carrier reconnects: the call resumes
        await again.connect(http)
        await async_wait_for(
            lambda: _async(any(live.id == victim.id for live in live_session(pod))),
            timeout=5,
            what="resumed",
        )
        await again.stop()
        await healthy.stop()


async def test_audio_faster_than_real_time_is_dropped_and_a_flood_ends_the_call(
    pod_factory: PodFactory,
) -> None:
    """Caller audio is taken at real time plus a burst, as on every transport: beyond it the audio is
    dropped with one error event, and a carrier that runs ever further ahead is cut off."""
    pod = await pod_factory(phone_config(session={"limits": {"audioBurstSeconds": 1.0}}))
    before = bad_inputs("twilio", "audio_rate")
    frame = {"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}
    async with aiohttp.ClientSession() as http:
        bursty = await answered_call(http, pod, "twilio")
        await async_wait_for(lambda: _async(len(live_session(pod)) == 1), timeout=5, what="admitted")
        [live] = live_session(pod)
        for _ in range(100):  # 2 s of audio at once: 1 s beyond the burst
            await bursty.send_json(frame)
        await async_wait_for(lambda: _async(bool(bursty.errors)), timeout=5, what="the refusal")
        assert [e["code"] for e in bursty.errors] == ["audio_rate"]  # once, not per dropped frame
        assert bad_inputs("twilio", "audio_rate") > before
        assert not live.finished.is_set()
        for _ in range(35 * 50):  # 35 s ahead of real time: a flood
            await bursty.send_json(frame)
        await async_wait_for(lambda: _async(live.finished.is_set()), timeout=10, what="the call cut off")
        assert live.end_reason == "input_flood"
        await async_wait_for(lambda: _async(bursty.closed.is_set()), timeout=5, what="the stream closed")
        assert bursty.close_code == 1008 and "audio flood" in bursty.close_reason


async def test_an_oversized_webhook_body_is_refused_by_the_pods_body_guard(pod_factory: PodFactory) -> None:
    pod = await pod_factory(phone_config())
    async with aiohttp.ClientSession() as http:
        body = {"CallSid": "CA1", "From": "+15550100", "Padding": "x" * (70 * 1024)}
        async with http.post(f"{pod.http_url}/v1/telephony/twilio/voice", data=body) as response:
            assert response.status == 413 and "larger than" in await response.text()
        assert live_session(pod) == []
