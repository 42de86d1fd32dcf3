"""Phone calls in a fleet: the webhook places each call on a pod with room (Redis placement), the stream
goes to that pod, and a reconnect resumes the call on the pod it is pinned to."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from agent_pod.runtime import Pod
from agent_pod.settings import PodSettings
from tests.support.carrier import FakeCarrierCall, call_webhook, parse_answer
from tests.support.pod import pod_ports
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for
from tests.telephony.test_calls import _async, live_session, phone_config


@pytest.fixture
async def fleet(private_redis: RedisServer, tmp_path: Path) -> AsyncIterator[list[Pod]]:
    key = tmp_path / "resume.key"
    key.write_bytes(b"telephony-fleet-resume-key-0123456789")
    pods = []
    for name in ("pod-a", "pod-b"):
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name=name,
            redis_url=private_redis.url,
            resume_key_file=key,
            log_format="text",
        )
        pod = Pod(settings, phone_config(sessionsPerPod=1), pod_ports())
        await pod.start()
        pods.append(pod)
    yield pods
    for pod in pods:
        await pod.stop()


async def test_the_webhook_places_calls_on_pods_with_room(
    fleet: list[Pod], ulaw_fixtures: dict[str, bytes]
) -> None:
    front = fleet[0]
    ports = {urlsplit(pod.http_url).port: pod for pod in fleet}
    async with aiohttp.ClientSession() as http:
        calls = []
        for n in range(2):  # both through pod-a's webhook: one pod each (one session per pod)
            status, body = await call_webhook(http, front.http_url, "twilio", call_id=f"CA{n}")
            assert status == 200, body
            calls.append(FakeCarrierCall("twilio", parse_answer("twilio", body)))
        owners = [ports[urlsplit(call.answer.url).port] for call in calls]
        assert {pod.settings.pod_name for pod in owners} == {"pod-a", "pod-b"}
        status, body = await call_webhook(http, front.http_url, "twilio", call_id="CA3")
        assert status == 503 and json.loads(body)["error"]["code"] == "unavailable"  # no pod has room
        for call in calls:
            await call.connect(http)
        await async_wait_for(
            lambda: _async(all(len(live_session(o)) == 1 for o in owners)), timeout=5, what="admitted"
        )
        await calls[1].speak(ulaw_fixtures["hello"], silence_after_ms=600)
        await async_wait_for(lambda: _async(calls[1].played_ms > 200), timeout=10, what="answered")
        pinned = live_session(owners[1])[0]
        await async_wait_for(lambda: _async(pinned.session.conversation.turns == 1), timeout=10, what="turn")
        await calls[1].hang_up()
        await async_wait_for(lambda: _async(pinned.finished.is_set()), timeout=5, what="released")
        again = FakeCarrierCall("twilio", calls[1].answer)
        await again.connect(http)
        await async_wait_for(lambda: _async(len(live_session(owners[1])) == 1), timeout=5, what="resumed")
        resumed = live_session(owners[1])[0]
        assert resumed.resumed and resumed.id == pinned.id
        assert resumed.session.conversation.turns == 1
        await again.stop()
        await calls[0].stop()
