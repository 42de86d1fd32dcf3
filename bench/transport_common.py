"""For the transport benchmarks: a `voicefleet pod` subprocess with zero-latency providers, caller
worker processes, CPU, tables.

Callers run in worker processes (``python -m bench.transport_callers``), a few
sessions each, so that no single client process is the bottleneck; every
worker reports what its callers measured plus its own CPU and event-loop lag,
which tells how much of a caller-measured number is the client's share.
Processes on one machine share CLOCK_MONOTONIC, so the workers start and
record on absolute ``time.monotonic()`` deadlines set by the benchmark.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from agent_pod.config import AgentConfig
from bench.report import bucket_quantile, percentile
from tests.support.net import free_port, free_range

ROOT = Path(__file__).resolve().parents[1]
MIN_SILENCE_MS = 300
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_LATENESS = "voicefleet_output_frame_lateness_seconds"
SEND_DELAY = "voicefleet_transport_send_delay_seconds"
RESULT_LIMIT = 64 * 1024 * 1024  # a worker's result line holds every lateness sample of its callers


def zero_latency_config(**session: Any) -> AgentConfig:
    """Energy VAD, synthetic STT/TTS, scripted LLM: what remains of the latency is the platform's."""
    return AgentConfig.model_validate(
        {
            "agent": "bench",
            "pipeline": {
                "vad": {"provider": "energy", "minSpeechMs": 100, "minSilenceMs": MIN_SILENCE_MS},
                "stt": {"provider": "synthetic", "options": {"transcript": "hello there"}},
                "llm": {"provider": "scripted"},
                "tts": {"provider": "synthetic", "options": {"ms_per_char": "20"}},
            },
            "session": {"drainTimeoutSeconds": 5, "idleTimeoutSeconds": 600, **session},
            "sessionsPerPod": 10000,
        }
    )


class CallerJob(BaseModel):
    """What one worker process is asked to do."""

    kind: Literal["latency", "grpc_load", "webrtc_load"]
    transport: Literal["grpc", "webrtc"] = "grpc"
    grpc_address: str = ""
    webrtc_url: str = ""
    sessions: int
    turns: int = 5
    spread_seconds: float = Field(default=1.0, description="latency: first turns start spread over this")
    warmup_seconds: float = 3.0
    seconds: float = Field(default=10.0, description="load: length of the recorded window")


class TurnResult(BaseModel):
    added_ms: float = Field(
        description="caller's end of speech -> first audible agent frame, minus minSilenceMs"
    )
    pod_ms: float | None = Field(
        description="pod: end-of-turn decision -> first frame handed to the transport"
    )
    stt_final_ms: float | None = Field(description="pod: VAD end of speech -> end-of-turn decision")


class WorkerResult(BaseModel):
    sessions: int
    failed: list[str] = Field(default_factory=list)
    turns: list[TurnResult] = Field(default_factory=list)
    lateness_ms: list[float] = Field(default_factory=list, description="gRPC load: output-frame lateness")
    frames: int = Field(default=0, description="load: agent frames received in the recorded window")
    min_audible_frames: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    loop_lag_ms: list[float] = Field(default_factory=list, description="event-loop lag samples (10 ms timer)")


class Workers:
    """Caller worker processes: each connects its sessions, says ready, and starts on ``go``."""

    def __init__(self, job: CallerJob, per_worker: int) -> None:
        counts = [per_worker] * (job.sessions // per_worker)
        if job.sessions % per_worker:
            counts.append(job.sessions % per_worker)
        self.jobs = [job.model_copy(update={"sessions": n}) for n in counts]
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Workers:
        for job in self.jobs:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.transport_callers", cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=RESULT_LIMIT,
            )  # fmt: skip
            assert proc.stdin is not None
            proc.stdin.write(job.model_dump_json().encode() + b"\n")
            self.procs.append(proc)
        return self

    async def ready(self, within: float = 120.0) -> None:
        """Wait until every worker has connected its callers."""
        async with asyncio.timeout(within):
            for proc in self.procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                if line.strip() != b"ready":
                    raise RuntimeError(f"caller worker failed to start: {await self._stderr(proc)}")

    def go(self, start_at: float) -> None:
        """Start every worker at ``start_at`` (time.monotonic of this machine)."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n".encode())

    async def results(self, within: float = 600.0) -> list[WorkerResult]:
        out = []
        async with asyncio.timeout(within):
            for proc in self.procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"caller worker died: {await self._stderr(proc)}")
                out.append(WorkerResult.model_validate_json(line))
        return out

    async def _stderr(self, proc: asyncio.subprocess.Process) -> str:
        await proc.wait()
        assert proc.stderr is not None
        return (await proc.stderr.read()).decode(errors="replace")[-2000:]

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def client_summary(results: list[WorkerResult]) -> dict[str, Any]:
    """The callers' own load: CPU cores used by all workers and their worst event-loop lag."""
    lag = [v for r in results for v in r.loop_lag_ms]
    wall = max((r.wall_seconds for r in results), default=0.0)
    return {
        "workers": len(results),
        "client_cores": sum(r.cpu_seconds for r in results) / wall if wall else float("nan"),
        "client_loop_lag_p99_ms": percentile(lag, 0.99),
    }


class PodRunner:
    def __init__(self, pid: int, http_url: str, grpc_address: str, metrics_url: str) -> None:
        self.pid = pid
        self.http_url = http_url
        self.grpc_address = grpc_address
        self.metrics_url = metrics_url

    async def histograms(self) -> dict[str, dict[float, float]]:
        """Cumulative bucket counts (upper bound -> count) of the pod's histograms, by name and labels."""
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as response:
            text = await response.text()
        out: dict[str, dict[float, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                    key = sample.name.removesuffix("_bucket") + (f"{{{labels}}}" if labels else "")
                    out.setdefault(key, {})[float(sample.labels["le"])] = sample.value
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU of the pod process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    async def snapshot(self) -> PodSnapshot:
        """The pod's histograms and CPU now, for ``since``."""
        return PodSnapshot(histograms=await self.histograms(), cpu=self.cpu_seconds(), at=time.monotonic())

    async def since(self, before: PodSnapshot, transport: str = "") -> PodWindow:
        """The pod's CPU, playout tick lateness and send delay (of ``transport``) since a ``snapshot``."""
        after = await self.snapshot()

        def quantile_ms(name: str, q: float) -> float:
            return bucket_quantile(before.histograms.get(name, {}), after.histograms.get(name, {}), q) * 1000

        send = f"{SEND_DELAY}{{transport={transport}}}"
        return PodWindow(
            cores=(after.cpu - before.cpu) / (after.at - before.at),
            tick_lateness_p99_ms_at_most=quantile_ms(TICK_LATENESS, 0.99),
            send_delay_p50_ms_at_most=quantile_ms(send, 0.5),
            send_delay_p99_ms_at_most=quantile_ms(send, 0.99),
        )


class PodSnapshot(BaseModel):
    histograms: dict[str, dict[float, float]]
    cpu: float
    at: float


class PodWindow(BaseModel):
    cores: float = Field(description="CPU cores the pod process used")
    tick_lateness_p99_ms_at_most: float = Field(description="pod playout tick lateness p99 (bucket bound)")
    send_delay_p50_ms_at_most: float = Field(description="frame handed to the transport -> taken for sending")
    send_delay_p99_ms_at_most: float


@asynccontextmanager
async def pod_process(config: AgentConfig) -> AsyncIterator[PodRunner]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(config.model_dump_json(by_alias=True))
        grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
        low, high = free_range(256, udp=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent_pod.cli", "pod", "--config", str(path), "--host", "127.0.0.1",
            "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
            "--udp-ports", f"{low}-{high}",
            cwd=ROOT, env={**os.environ, "VOICEFLEET_LOG_FORMAT": "json"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        runner = PodRunner(
            proc.pid,
            f"http://127.0.0.1:{http_port}",
            f"127.0.0.1:{grpc_port}",
            f"http://127.0.0.1:{metrics_port}/metrics",
        )
        try:
            await _wait_ready(runner.http_url, proc)
            yield runner
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"pod exited with {proc.returncode}")
            try:
                async with http.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("pod not ready")
