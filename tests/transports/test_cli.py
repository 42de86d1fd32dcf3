"""`voicefleet call` against a pod: prints what the agent heard and said, and the latencies."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.support.pod import REPO, synthetic_config


async def _voicefleet(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent_pod.cli", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return int(proc.returncode or 0), out.decode()


@pytest.mark.parametrize("transport", ["grpc", "webrtc"])
async def test_call_prints_transcripts_answers_and_latencies(pod_factory, hello_wav, transport):
    pod = await pod_factory(synthetic_config(transcript="what is the weather"))
    target = (
        ["--grpc", pod.grpc_address] if transport == "grpc" else ["--webrtc", pod.http_url + "/v1/webrtc"]
    )
    code, out = await _voicefleet("call", *target, "--wav", str(hello_wav), "--wait", "30")
    assert code == 0, out
    assert "you:    what is the weather" in out
    assert "agent:  " in out
    assert "response latency" in out
    assert "latency: " in out and "from your end of speech" in out
    assert "ended:  client_ended" in out


async def test_call_reports_a_refused_target():
    code, out = await _voicefleet("call", "--grpc", "127.0.0.1:1", "--text", "hi", "--wait", "5")
    assert code == 2
    assert "call failed: stream refused: StatusCode.UNAVAILABLE" in out
    assert "Traceback" not in out


async def test_text_only_call_returns_once_answered(pod_factory):
    pod = await pod_factory()
    code, out = await _voicefleet(
        "call", "--webrtc", pod.http_url + "/v1/webrtc", "--text", "what is the weather", "--wait", "60"
    )
    assert code == 0, out
    assert "agent:  You said: what is the weather." in out
    assert "stopped waiting" not in out
