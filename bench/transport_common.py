"""For the transport benchmarks: a `voicefleet pod` subprocess with zero-latency providers, CPU, tables."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from agent_pod.config import AgentConfig
from tests.support.net import free_port
from tests.support.pod import free_udp_range

ROOT = Path(__file__).resolve().parents[1]
MIN_SILENCE_MS = 300
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


class PodRunner:
    def __init__(self, pid: int, http_url: str, grpc_address: str, metrics_url: str) -> None:
        self.pid = pid
        self.http_url = http_url
        self.grpc_address = grpc_address
        self.metrics_url = metrics_url

    async def histogram(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts (upper bound -> count) of a histogram on the pod's /metrics."""
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as response:
            text = await response.text()
        buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name + "_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
        return buckets

    def cpu_seconds(self) -> float:
        """User + system CPU of the pod process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


@asynccontextmanager
async def pod_process(config: AgentConfig) -> AsyncIterator[PodRunner]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(config.model_dump_json(by_alias=True))
        grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
        low, high = free_udp_range(256)
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


def tone(sample_rate: int, seconds: float, silence_after: float = 0.0) -> bytes:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    return x.tobytes() + bytes(int(sample_rate * silence_after) * 2)


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of the observations made between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if total and count >= q * total:
            return bound
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[h for h in headers]] + [
        [f"{c:.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2))
