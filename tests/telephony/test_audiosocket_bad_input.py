"""Bad AudioSocket input next to a healthy call: each gets a clear error, is counted, and harms nothing."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_pod.runtime import Pod
from agent_pod.telephony import audiosocket_wire as wire
from tests.support.fake_pbx import FakePbx, speech
from tests.support.redis import RedisServer
from tests.telephony.test_audiosocket import admitted, bad_inputs, live_call, pbx, start_pod


@pytest.fixture
async def pod(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Pod]:
    pod = await start_pod(redis_server, tmp_path, "asock-bad")
    yield pod
    await pod.stop()


async def _refused_at_once(pod: Pod, first: bytes, reason: str) -> None:
    """A connection whose first bytes cannot start a call: an error frame, a hangup, no session."""
    before = bad_inputs(reason)
    sessions = pod.hub.live_sessions if pod.hub else 0
    phone = await pbx(pod).connect(name_call=False)
    phone.send(first)
    await phone.wait(lambda: phone.closed.is_set(), 10, f"the pod to hang up on {reason}")
    assert phone.error_codes == [wire.ErrorCode.PROTOCOL] and phone.hung_up
    assert bad_inputs(reason) == before + 1
    assert pod.hub is not None and pod.hub.live_sessions == sessions
    await phone.drop()


async def test_bad_streams_end_alone_while_a_healthy_call_is_answered(pod: Pod) -> None:
    async with pbx(pod) as healthy:
        await admitted(pod, healthy)
        talking = asyncio.create_task(healthy.stream(speech("hello there")))
        # Garbage (a 0x4b.. "header" announcing ~19 kB), an oversized length, audio before the UUID.
        await _refused_at_once(pod, b"K\x4b\x4b" + os.urandom(64), "oversized")
        await _refused_at_once(pod, wire.HEADER.pack(wire.Kind.AUDIO, 0xFFFF), "oversized")
        await _refused_at_once(pod, wire.audio(bytes(wire.FRAME_BYTES)), "no_uuid")
        await talking
        frames = await healthy.quiet_answer(since=0)
        live = live_call(pod, healthy.call)
        assert live is not None and not live.finished.is_set()
        assert live.session.turn_records[-1].played_text == "Hello! How can I help you today?"
        assert abs(frames * 20 - live.session.turn_records[-1].played_ms) <= 20


async def test_bad_frames_inside_a_call_are_dropped_and_the_call_goes_on(pod: Pod) -> None:
    reasons = ("audio_size", "unknown_kind", "dtmf", "duplicate_uuid")
    before = {r: bad_inputs(r) for r in reasons}
    async with pbx(pod) as phone:
        live = await admitted(pod, phone)
        phone.send(wire.encode(wire.Kind.AUDIO, bytes(321)))  # half a sample
        phone.send(wire.encode(0x42, b"future"))
        phone.send(wire.encode(wire.Kind.DTMF, b"x"))
        phone.send(wire.uuid_frame(uuid.uuid4()))
        phone.dtmf("9#")  # the call still takes input
        await phone.quiet_answer(since=0)
        assert live.session.turn_records[-1].played_text == "You said: DTMF 9."
        assert {r: bad_inputs(r) - before[r] for r in reasons} == dict.fromkeys(reasons, 1.0)
        assert not phone.closed.is_set() and phone.error_codes == []


async def test_garbage_mid_call_ends_that_call_with_an_error_frame(pod: Pod) -> None:
    before = bad_inputs("oversized")
    async with pbx(pod) as phone, pbx(pod) as other:
        live = await admitted(pod, phone)
        await admitted(pod, other)
        phone.send(b"\x10\xff\xff" + b"\x00" * 100)
        await phone.wait(lambda: phone.closed.is_set(), 10, "the hangup")
        assert phone.error_codes == [wire.ErrorCode.PROTOCOL] and phone.hung_up
        assert bad_inputs("oversized") == before + 1
        await phone.wait(lambda: live.finished.is_set(), 10, "the session to end")
        assert live.end_reason == "invalid_message"
        other.dtmf("1#")  # the other call on the pod is untouched
        await other.quiet_answer(since=0)


async def test_a_pbx_that_disconnects_mid_word_leaves_a_resumable_call(pod: Pod) -> None:
    phone = await pbx(pod).connect()
    live = await admitted(pod, phone)
    word = speech("hello there")
    await phone.stream(word[: len(word) // 2], then_silence_ms=0)
    phone.send(wire.audio(bytes(100))[:50])  # and half a frame
    await phone.drop()
    await phone.wait(lambda: live.finished.is_set(), 10, "the pod to notice")
    assert live.end_reason == "disconnected"
    assert pod.audio_socket is not None and pod.audio_socket.keys.get(phone.call, 0.0) is not None


async def test_unknown_calls_are_refused_when_new_calls_are_off(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    closed = await start_pod(redis_server, tmp_path, "asock-closed", audio_socket={"newCalls": False})
    try:
        phone = await pbx(closed).connect()
        await phone.wait(lambda: phone.closed.is_set(), 10, "the refusal")
        assert phone.error_codes == [wire.ErrorCode.REFUSED] and phone.hung_up
        assert closed.hub is not None and closed.hub.live_sessions == 0
    finally:
        await closed.stop()


async def test_a_silent_connection_is_given_up_on(pod: Pod, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_pod.telephony import audiosocket

    monkeypatch.setattr(audiosocket, "FIRST_FRAME_TIMEOUT_SECONDS", 0.3)
    before = bad_inputs("no_uuid")
    phone = await FakePbx("127.0.0.1", pod.audio_socket.port if pod.audio_socket else 0).connect(
        name_call=False
    )
    await phone.wait(lambda: phone.closed.is_set(), 10, "the timeout")
    assert phone.error_codes == [wire.ErrorCode.PROTOCOL]
    assert bad_inputs("no_uuid") == before + 1
