"""Fixtures that run agent pods: in-process (in the test's event loop) and as `voicefleet pod` subprocesses.

Configs: ``synthetic_config`` (energy VAD, synthetic STT/TTS, scripted LLM: zero-latency, deterministic)
and ``offline_config`` (the embedded offline default: silero VAD, pocketsphinx, scripted LLM, espeak).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from agent_pod.client.webrtc_client import MicrophoneTrack
from agent_pod.config import AgentConfig
from agent_pod.runtime import Pod, Ports
from agent_pod.settings import PodSettings
from agent_pod.transports.ice import IcePolicy, PortAllocator, confine
from tests.support.net import free_port, free_range
from tests.support.wait import async_wait_for

REPO = Path(__file__).resolve().parents[2]


def synthetic_config(transcript: str = "hello there", **overrides: Any) -> AgentConfig:
    """Zero-latency providers: every utterance is heard as ``transcript``; answers are tones."""
    data: dict[str, Any] = {
        "agent": "test",
        "pipeline": {
            "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": 300},
            "stt": {"provider": "synthetic", "options": {"transcript": transcript}},
            "llm": {"provider": "scripted"},
            "tts": {"provider": "synthetic", "options": {"ms_per_char": "20"}},
        },
        "session": {"drainTimeoutSeconds": 30},
        "sessionsPerPod": 100,
    }
    _merge(data, overrides)
    return AgentConfig.model_validate(data)


def offline_config(**overrides: Any) -> AgentConfig:
    """The embedded offline pipeline with a small vocabulary for pocketsphinx on espeak-ng speech."""
    data: dict[str, Any] = {
        "agent": "offline",
        "pipeline": {"stt": {"vocabulary": ["hello", "weather", "story"]}},
    }
    _merge(data, overrides)
    return AgentConfig.model_validate(data)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@asynccontextmanager
async def loopback_offer() -> AsyncIterator[dict[str, str]]:
    """A WebRTC offer (JSON body for signaling) from a peer connection on loopback, closed on exit."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(MicrophoneTrack(), direction="sendrecv")
        confine(pc, IcePolicy(addresses=["127.0.0.1"]), PortAllocator(0, 0))
        await pc.setLocalDescription(await pc.createOffer())
        yield {"sdp": pc.localDescription.sdp, "type": "offer"}
    finally:
        await pc.close()


def pod_ports(udp_size: int = 64) -> Ports:
    low, high = free_range(udp_size, udp=True)
    return Ports(grpc=free_port(), http=free_port(), metrics=free_port(), udp_min=low, udp_max=high)


PodFactory = Callable[..., Awaitable[Pod]]


@pytest.fixture
async def pod_factory() -> AsyncIterator[PodFactory]:
    """``await pod_factory(config, **pod_kwargs)``: a started in-process pod on free loopback ports."""
    pods: list[Pod] = []

    async def make(config: AgentConfig | None = None, **kwargs: Any) -> Pod:
        settings = PodSettings(bind_host="127.0.0.1", pod_name=f"pod-{len(pods)}", log_format="text")
        pod = Pod(settings, config or synthetic_config(), kwargs.pop("ports", None) or pod_ports(), **kwargs)
        pods.append(pod)
        await pod.start()
        return pod

    yield make
    for pod in pods:
        await pod.stop()


class PodProcess:
    """`python -m agent_pod.cli pod` in a subprocess on free loopback ports."""

    def __init__(
        self, config: AgentConfig, workdir: Path, name: str = "pod-sub", env: dict[str, str] | None = None
    ) -> None:
        self.config_path = workdir / f"{name}.json"
        self.config_path.write_text(config.model_dump_json(by_alias=True))
        self.ports = pod_ports()
        self.log_path = workdir / f"{name}.log"
        self.name = name
        self.env = env or {}  # more VOICEFLEET_* settings (Redis URL, resume key file...)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.ports.metrics}"

    async def start(self, within: float = 60.0) -> None:
        p = self.ports
        env = {**os.environ, "VOICEFLEET_POD_NAME": self.name, "VOICEFLEET_LOG_FORMAT": "json", **self.env}
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent_pod.cli", "pod",
                "--config", str(self.config_path), "--host", "127.0.0.1",
                "--grpc-port", str(p.grpc), "--http-port", str(p.http), "--metrics-port", str(p.metrics),
                "--udp-ports", f"{p.udp_min}-{p.udp_max}",
                cwd=REPO, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        await async_wait_for(lambda: self.ready(expect=True), timeout=within, what=f"{self.name} ready")

    async def ready(self, expect: bool | None = None) -> bool:
        """Whether /readyz answers 200; fails fast if the process died."""
        assert self.proc is not None
        if self.proc.returncode is not None and expect:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(self.http_url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def pod_process_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[PodProcess]]]:
    procs: list[PodProcess] = []

    async def make(config: AgentConfig | None = None, name: str = "pod-sub") -> PodProcess:
        proc = PodProcess(config or synthetic_config(), tmp_path, name)
        procs.append(proc)
        await proc.start()
        return proc

    yield make
    for proc in procs:
        await proc.kill()


def tone(sample_rate: int, seconds: float, silence_after: float = 0.0, freq: float = 300.0) -> bytes:
    """A loud tone the energy VAD hears as speech, then silence."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    return x.tobytes() + bytes(int(sample_rate * silence_after) * 2)


def espeak_wav(text: str, path: Path) -> Path:
    """Speech from espeak-ng (22.05 kHz mono PCM16 WAV)."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def hello_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng saying "hello", with silence around it so a VAD sees the turn end."""
    raw = espeak_wav("hello", tmp_path_factory.mktemp("speech") / "hello-raw.wav")
    padded = raw.with_name("hello.wav")
    subprocess.run(["sox", str(raw), str(padded), "pad", "0.3", "1.2"], check=True)
    return padded


async def wait_until(condition: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Await a synchronous condition without blocking the event loop."""

    async def check() -> bool:
        return condition()

    await async_wait_for(check, timeout=within, what=what)
