"""Phone calls on the real node: a carrier's webhook and Media Stream, and an Asterisk PBX over
AudioSocket, reach an agent pod through its Service; the pod records the call and writes its signed
audit log, which `voicefleet audit verify` proves inside the pod.

The fake carrier and PBX run on the host. The webhook goes through the agent Service (kube-proxy);
its answer points the media stream at the chosen pod's own address, as a carrier would be told. The
PBX dials the Service's AudioSocket port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from agent_pod.telephony import audiosocket_wire as wire
from agent_pod.telephony import mulaw
from tests.support.audio import espeak_utterance
from tests.support.carrier import FakeCarrierCall, call_webhook, parse_answer
from tests.support.fake_pbx import FakePbx, speech
from tests.support.node import Release
from tests.support.wait import async_wait_for
from voicefleet_operator.render import AUDIT_KEY_DIR

pytestmark = pytest.mark.e2e

AGENT = "phone"
ANSWER = "Hello! How can I help you today?"
SPEC: dict[str, Any] = {
    "replicas": 1,
    "autoscaling": {"enabled": False, "sessionsPerPod": 20},
    "pipeline": {
        "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": 300},
        "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
        "llm": {"provider": "scripted"},
        "tts": {"provider": "synthetic", "options": {"ms_per_char": "20"}},
        "compliance": {"audit": False},
    },
    "prompt": {"inline": "You answer the phone.", "version": "v1"},
    "transport": {
        "grpc": {"enabled": True, "port": 50051},
        "webrtc": {"enabled": False},
        "audioSocket": {"enabled": True, "port": 9019},
    },
    "session": {"idleTimeoutSeconds": 120, "maxDurationSeconds": 600},
    "telephony": {"enabled": True, "carriers": ["twilio"]},
    "recording": {"enabled": True, "sampleRate": 8000},
    "audit": {"enabled": True},
}


@pytest.fixture(scope="module")
def phone(fleet_release: Release) -> Iterator[Release]:
    fleet_release.apply_agent(AGENT, SPEC)
    fleet_release.wait_agent_serving(AGENT, 1)
    yield fleet_release
    fleet_release.cluster.kubectl("delete", "voiceagent", AGENT, "-n", fleet_release.namespace, check=False)


async def _true(value: bool) -> bool:
    return value


def verify_in_pod(release: Release, session_id: str) -> str:
    """`voicefleet audit verify` run in the agent pod (kubectl exec), against its records volume."""
    [pod] = release.agent_pods(AGENT, ready=True)
    out = release.cluster.kubectl(
        "exec", "-n", release.namespace, pod, "--",
        "voicefleet", "audit", "verify", session_id,
        "--dir", "/var/lib/voicefleet/records/audit", "--key", f"{AUDIT_KEY_DIR}/key",
    )  # fmt: skip
    return str(out.stdout)


@pytest.mark.timeout(600)
async def test_a_carrier_call_through_the_service_is_answered_recorded_and_audited(phone: Release) -> None:
    base_url = f"http://{phone.service_address(AGENT, 'http')}"
    async with aiohttp.ClientSession() as http:
        status, body = await call_webhook(http, base_url, "twilio")
        assert status == 200, body
        answer = parse_answer("twilio", body)
        pod_ip = answer.url.split("//", 1)[1].split(":", 1)[0]
        [pod] = phone.ready_pods(f"voicefleet.io/agent={AGENT}")
        assert pod["status"]["podIP"] == pod_ip  # the stream goes straight to the pod that holds the call
        call = FakeCarrierCall("twilio", answer)
        await call.connect(http)
        await call.speak(mulaw.encode(espeak_utterance("hello there", rate=8000)), silence_after_ms=600)
        expected_ms = len(ANSWER) * 20 * 0.8
        await async_wait_for(lambda: _true(call.played_ms >= expected_ms), timeout=30, what="the answer")
        await async_wait_for(lambda: _true(bool(call.marks_acked)), timeout=10, what="marks acknowledged")
        await call.stop()
    session_id = answer.parameters["sessionId"]

    async def verified() -> str | None:
        result = await asyncio.to_thread(
            phone.cluster.kubectl,
            "exec", "-n", phone.namespace, pod["metadata"]["name"], "--",
            "voicefleet", "audit", "export", session_id, "--json",
            "--dir", "/var/lib/voicefleet/records/audit",
            check=False,
        )  # fmt: skip
        if result.returncode != 0 or '"recording"' not in result.stdout:
            return None
        return str(result.stdout)

    exported = json.loads(await async_wait_for(verified, timeout=30, interval=1, what="the call's audit log"))
    assert ANSWER in json.dumps(exported)
    out = await asyncio.to_thread(verify_in_pod, phone, session_id)
    assert "ok recording" in out and ".wav" in out, out


@pytest.mark.timeout(300)
async def test_a_pbx_call_over_audiosocket_through_the_service(phone: Release) -> None:
    host, port = phone.service_address(AGENT, "audiosocket").split(":")
    async with FakePbx(host, int(port)) as pbx:
        await pbx.stream(speech("hello there"))
        await pbx.wait(lambda: pbx.audio_frames * 20 >= len(ANSWER) * 20 * 0.8, 30, "the answer")
        assert {len(f.payload) for f in pbx.of_kind(wire.Kind.AUDIO)} == {wire.FRAME_BYTES}
        await pbx.hang_up()
        assert pbx.hung_up
