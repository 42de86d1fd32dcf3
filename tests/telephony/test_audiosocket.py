"""AudioSocket calls against a real in-process pod on real Redis, through a fake PBX over TCP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from agent_pod.runtime import Pod
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.sessions.tuning import DirectoryTuning
from agent_pod.settings import PodSettings
from agent_pod.telephony import audiosocket_wire as wire
from agent_pod.transports.hub import LiveSession
from tests.support.fake_pbx import FakePbx, speech
from tests.support.migration import crash_pod
from tests.support.net import free_port
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer


def bad_inputs(reason: str) -> float:
    labels = {"transport": "audiosocket", "reason": reason}
    return REGISTRY.get_sample_value("voicefleet_transport_bad_input_total", labels) or 0.0


async def start_pod(
    redis: RedisServer,
    tmp_path: Path,
    agent: str,
    credentials_dir: Path | None = None,
    pod_name: str = "",
    tuning: DirectoryTuning | None = None,
    **overrides: Any,
) -> Pod:
    key_file = tmp_path / "resume.key"
    key_file.write_bytes(b"audiosocket-test-key-0123456789ab")
    transport = {"audioSocket": {"enabled": True, **overrides.pop("audio_socket", {})}}
    config = synthetic_config(agent=agent, transport=transport, **overrides)
    settings = PodSettings(
        bind_host="127.0.0.1",
        pod_name=pod_name or f"{agent}-0",
        redis_url=redis.url,
        resume_key_file=key_file,
        credentials_dir=credentials_dir,
    )
    ports = pod_ports()
    ports.audio_socket = free_port()
    pod = Pod(settings, config, ports, tuning=tuning)
    await pod.start()
    assert pod.audio_socket is not None and pod.audio_socket.port == ports.audio_socket
    return pod


@pytest.fixture
async def pod(
    redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Pod]:
    pod = await start_pod(redis_server, tmp_path, f"asock-{request.node.name[5:30].replace('_', '-')}")
    yield pod
    await pod.stop()


def pbx(pod: Pod, call: uuid.UUID | None = None) -> FakePbx:
    assert pod.audio_socket is not None
    return FakePbx("127.0.0.1", pod.audio_socket.port, call)


def live_call(pod: Pod, call: uuid.UUID) -> LiveSession | None:
    assert pod.audio_socket is not None and pod.hub is not None
    known = pod.audio_socket.keys.get(call, 0.0)
    return pod.hub.find(known.session_id) if known else None


async def admitted(pod: Pod, phone: FakePbx, other_than: LiveSession | None = None) -> LiveSession:
    """The call's live session once admitted (``other_than``: a newer one than that)."""

    def current() -> LiveSession | None:
        live = live_call(pod, phone.call)
        return live if live is not None and live is not other_than else None

    live = await phone.wait(current, 10, "the call to be admitted")
    assert live is not None
    return live


async def test_a_phone_call_is_heard_and_answered_in_20_ms_slin_frames(pod: Pod) -> None:
    async with pbx(pod) as phone:
        await phone.stream(speech("hello there"))
        frames = await phone.quiet_answer(since=0)
        sizes = {len(f.payload) for f in phone.of_kind(wire.Kind.AUDIO)}
        assert sizes == {wire.FRAME_BYTES}  # one 20 ms frame per tick, nothing between answers
        live = live_call(pod, phone.call)
        assert live is not None and live.transport == "audiosocket"
        record = live.session.turn_records[-1]
        assert record.played_text == "Hello! How can I help you today?"
        assert abs(frames * 20 - record.played_ms) <= 20
        await phone.hang_up()
        assert phone.hung_up
    assert live.end_reason == "client_ended"


async def test_keypad_digits_reach_the_agent_as_one_input(pod: Pod) -> None:
    async with pbx(pod) as phone:
        await admitted(pod, phone)
        phone.dtmf("42#")
        await phone.quiet_answer(since=0)
        live = live_call(pod, phone.call)
        assert live is not None
        assert live.session.turn_records[-1].played_text == "You said: DTMF 42."


async def test_a_dropped_connection_resumes_the_conversation_with_the_same_uuid(pod: Pod) -> None:
    call = uuid.uuid4()
    phone = await pbx(pod, call).connect()
    await phone.stream(speech("hello there"))
    await phone.quiet_answer(since=0)
    first = live_call(pod, call)
    assert first is not None
    await phone.drop()  # no hangup frame: the network failed
    await phone.wait(lambda: first.finished.is_set(), 10, "the pod to notice the drop")
    assert first.end_reason == "disconnected"

    again = await pbx(pod, call).connect()
    try:
        second = await admitted(pod, again)
        assert second.id == first.id and second.resumed and second.restored_turns == 1
        again.dtmf("7#")
        await again.quiet_answer(since=0)
        assert second.session.conversation.turns == 2
    finally:
        await again.drop()


def _answered(pod: Pod, phone: FakePbx) -> bool:
    """The pod admitted the call, or refused it (the connection closed)."""
    return live_call(pod, phone.call) is not None or phone.closed.is_set()


async def test_a_pbx_reconnecting_to_another_pod_resumes_the_call_there(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The UUID names the call fleet-wide (in Redis): when the pod that served it is lost, the PBX's
    reconnect reaches another pod of the agent, which resumes the conversation."""
    tuning = DirectoryTuning(heartbeat_seconds=0.2, stale_seconds=1.0)
    pods = [
        await start_pod(redis_server, tmp_path, "asock-fleet", pod_name=f"asock-fleet-{n}", tuning=tuning)
        for n in "ab"
    ]
    first_pod, second_pod = pods
    try:
        call = uuid.uuid4()
        phone = await pbx(first_pod, call).connect()
        await phone.stream(speech("hello there"))
        await phone.quiet_answer(since=0)
        first = live_call(first_pod, call)
        assert first is not None
        await phone.drop()
        await phone.wait(lambda: first.finished.is_set(), 10, "the first pod to notice the drop")
        await crash_pod(first_pod)
        pods.remove(first_pod)

        # Like a PBX, redial until the lost pod has gone stale and this one resumes the call.
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            again = await pbx(second_pod, call).connect()
            await again.wait(partial(_answered, second_pod, again), 10, "an answer")
            if live_call(second_pod, call) is not None:
                break
            assert again.error_codes == [wire.ErrorCode.REFUSED]  # "wrong pod" while its heartbeat is fresh
            await again.drop()
            assert asyncio.get_running_loop().time() < deadline, "the lost pod never went stale"
        try:
            second = await admitted(second_pod, again)
            assert second.id == first.id and second.resumed and second.restored_turns == 1
            again.dtmf("7#")
            await again.quiet_answer(since=0)
            assert second.session.conversation.turns == 2
            await again.hang_up()
            await again.wait(lambda: second.finished.is_set(), 10, "the call to end")
        finally:
            await again.drop()
        # Ended for good: no pod resumes it any more.
        assert second_pod.hub is not None
        assert await second_pod.hub.directory.recall_call_key(f"audiosocket:{call}") is None
    finally:
        for pod in pods:
            await pod.stop()


async def test_a_new_connection_for_a_live_call_takes_it_over(pod: Pod) -> None:
    call = uuid.uuid4()
    old = await pbx(pod, call).connect()
    first = await admitted(pod, old)
    new = await pbx(pod, call).connect()  # the PBX reconnected before the pod saw the old socket go
    try:
        second = await admitted(pod, new, other_than=first)
        assert second.id == first.id and second.resumed
        await old.wait(lambda: old.closed.is_set(), 10, "the old connection to be closed")
    finally:
        await old.drop()
        await new.drop()


async def test_an_interrupted_answer_played_exactly_what_was_sent(pod: Pod, redis_server, tmp_path) -> None:
    story_pod = await start_pod(
        redis_server,
        tmp_path,
        "asock-barge",
        pipeline={"stt": {"options": {"transcript": "tell me a story"}}},
    )
    try:
        async with pbx(story_pod) as phone:
            await phone.stream(speech("tell me a story"), then_silence_ms=400)
            await phone.wait(lambda: phone.audio_frames >= 40, 20, "the story to play")
            live = live_call(story_pod, phone.call)
            assert live is not None
            interrupted = lambda: [r for r in live.session.turn_records if r.interrupted]  # noqa: E731
            talking = asyncio.create_task(phone.stream(speech("stop please"), then_silence_ms=0))
            records = await phone.wait(interrupted, 10, "the barge-in")
            sent_ms = phone.audio_frames * 20  # before the caller's words become the next turn
            await talking
            # Frames are paced in real time: what the PBX got is what was played (a frame in flight).
            assert abs(sent_ms - records[0].played_ms) <= 40
            assert records[0].played_text and len(records[0].played_text) < len(records[0].sent_to_tts)
    finally:
        await story_pod.stop()


@pytest.fixture
async def two_pods(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Pod, Pod]]:
    """Two live pods of one agent on one Redis (a fast heartbeat: the old pod learns a call moved)."""
    tuning = DirectoryTuning(heartbeat_seconds=0.2, stale_seconds=1.0)
    pods = [
        await start_pod(redis_server, tmp_path, "asock-roam", pod_name=f"asock-roam-{n}", tuning=tuning)
        for n in "ab"
    ]
    try:
        yield pods[0], pods[1]
    finally:
        for pod in pods:
            await pod.stop()


@dataclass
class Roaming:
    """A call answered on the first of two pods; the PBX may redial it to the second."""

    first_pod: Pod
    second_pod: Pod
    call: uuid.UUID
    phone: FakePbx  # the first connection
    first: LiveSession  # the call as the first pod has it


@pytest.fixture
async def answered(two_pods: tuple[Pod, Pod]) -> Roaming:
    first_pod, second_pod = two_pods
    call = uuid.uuid4()
    phone = await pbx(first_pod, call).connect()
    await phone.stream(speech("hello there"))
    await phone.quiet_answer(since=0)
    first = live_call(first_pod, call)
    assert first is not None
    return Roaming(first_pod, second_pod, call, phone, first)


async def test_a_redial_to_another_pod_takes_the_call_over_while_its_pod_is_alive(answered: Roaming) -> None:
    first = answered.first
    await answered.phone.drop()  # the PBX's connection failed; it redials, and lands on the other pod
    await answered.phone.wait(lambda: first.finished.is_set(), 10, "the first pod to notice the drop")
    again = await pbx(answered.second_pod, answered.call).connect()
    try:
        second = await admitted(answered.second_pod, again)
        assert second.id == first.id and second.resumed and second.restored_turns == 1
        again.dtmf("7#")
        await again.quiet_answer(since=0)
        assert second.session.conversation.turns == 2
        # The first pod lets the call go (its heartbeat sees the pin on the other pod): a redial back
        # there is refused while the call is live here, never served twice.
        directory = answered.first_pod.directory
        assert isinstance(directory, RedisDirectory)
        await again.wait(lambda: first.id not in directory.local.owned, 10, "the first pod to let go")
        back = await pbx(answered.first_pod, answered.call).connect()
        await back.wait(lambda: back.closed.is_set(), 10, "the first pod to refuse")
        assert back.error_codes == [wire.ErrorCode.REFUSED] and not second.finished.is_set()
    finally:
        await again.drop()


async def test_a_redial_to_another_pod_before_the_old_connection_closed_waits_for_it(
    answered: Roaming,
) -> None:
    new = await pbx(answered.second_pod, answered.call).connect()  # the old one is still open: asked again
    try:
        await answered.phone.drop()
        second = await admitted(answered.second_pod, new)
        assert second.id == answered.first.id and second.resumed and answered.first.finished.is_set()
    finally:
        await new.drop()


async def test_a_redial_elsewhere_while_the_old_connection_stays_up_is_refused(answered: Roaming) -> None:
    try:
        other = await pbx(answered.second_pod, answered.call).connect()
        await other.wait(lambda: other.closed.is_set(), 10, "the refusal after the takeover wait")
        assert other.error_codes == [wire.ErrorCode.REFUSED]  # wrong_pod: never live on two pods
        assert not answered.first.finished.is_set() and live_call(answered.second_pod, answered.call) is None
    finally:
        await answered.phone.drop()


async def test_a_session_created_for_audiosocket_is_joined_by_its_uuid(
    two_pods: tuple[Pod, Pod],
) -> None:
    first_pod, second_pod = two_pods
    async with aiohttp.ClientSession() as http:
        body = {"metadata": {"crm": "ticket-42"}, "audioSocket": True}
        async with http.post(f"{first_pod.http_url}/v1/sessions", json=body) as response:
            assert response.status == 201
            grant = await response.json()
        async with http.post(f"{first_pod.http_url}/v1/sessions", json={}) as response:
            plain = await response.json()
    call = uuid.UUID(grant["audioSocketUuid"])
    assert call.hex == grant["sessionId"]
    for pod in (second_pod, first_pod):  # any pod: the fleet remembers the UUID
        async with pbx(pod, call) as phone:
            live = await admitted(pod, phone)
            assert live.id == grant["sessionId"]
            assert live.session.conversation.metadata == {"crm": "ticket-42"}
            await phone.drop()
            await phone.wait(live.finished.is_set, 10, "the drop")
    # A session created without it is not joinable by its id: that UUID is a new call.
    async with pbx(first_pod, uuid.UUID(hex=plain["sessionId"])) as phone:
        live = await admitted(first_pod, phone)
        assert live.id != plain["sessionId"]
