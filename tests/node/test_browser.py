"""A person calls the offline receptionist running on the real node, as `dev up` serves it:
headless Chromium opens the agent Service through `kubectl port-forward`, speaks espeak-ng
"hello" into a fake microphone, and hears the agent over WebRTC straight from the pod's IP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import call_from_web_page
from tests.support.net import free_port
from tests.support.node import Release
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

AGENT = "receptionist"
OFFLINE_SPEC = {
    "replicas": 1,
    "pipeline": {
        "vad": {"provider": "silero", "minSpeechMs": 200, "minSilenceMs": 400},
        "stt": {"provider": "pocketsphinx", "vocabulary": ["hello", "weather", "story"]},
        "llm": {"provider": "scripted"},
        "tts": {"provider": "espeak"},
    },
    "prompt": {"inline": "You are a friendly receptionist.", "version": "v1"},
    "transport": {"webrtc": {"enabled": True, "udpPortRange": {"min": 40000, "max": 40099}}},
}


@pytest.fixture(scope="module")
def page_url(fleet_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fleet_release.apply_agent(AGENT, OFFLINE_SPEC)
    fleet_release.wait_agent_serving(AGENT, 1)
    port = free_port()
    log = tmp_path_factory.mktemp("port-forward") / "log"
    kwok, ns = fleet_release.cluster.kwok, fleet_release.namespace
    with log.open("wb") as out:
        forward = subprocess.Popen(
            [str(kwok.bin_dir / "kubectl"), "port-forward", "-n", ns, f"svc/{AGENT}", f"{port}:8080",
             "--address", "127.0.0.1"],
            env=kwok.env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def listening() -> bool:
            assert forward.poll() is None, log.read_text()
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, timeout=30, what="kubectl port-forward")
        yield f"http://127.0.0.1:{port}/"
    finally:
        forward.terminate()
        forward.wait(timeout=10)
        fleet_release.cluster.kubectl(
            "delete", "voiceagent", AGENT, "-n", fleet_release.namespace, check=False
        )


async def test_a_person_calls_the_agent_on_the_real_node(
    page_url: str, speech_wav: Path, tmp_path: Path, fleet_release: Release
) -> None:
    state = await call_from_web_page(page_url, speech_wav, tmp_path / "profile")
    assert "hello" in state["transcripts"][0].lower()
    assert state["agentTexts"][0].startswith("Hello")

    # `kubectl get va` shows the capacity the live pod registered in Redis (the status is patched every
    # few seconds, so it is waited for).
    def columns() -> dict[str, str]:
        header, row = fleet_release.cluster.kubectl(
            "get", "va", AGENT, "-n", fleet_release.namespace
        ).stdout.splitlines()
        return dict(zip(header.split(), row.split(), strict=False))

    def serving() -> dict[str, str] | None:
        shown = columns()
        return shown if shown["READY"] == "True" and int(shown["CAPACITY"]) > 0 else None

    shown = await asyncio.to_thread(wait_for, serving, timeout=60, interval=1, what="READY and CAPACITY")
    assert shown["SESSIONS"].isdigit(), shown
