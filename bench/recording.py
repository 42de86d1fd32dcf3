"""What recording calls costs: CPU and event-loop latency of N concurrent recorded calls.

In one process, N calls are driven in real time by one 20 ms playout tick, as the transports do:
per call and tick, 20 ms of caller audio (8 kHz, a phone) goes to the caller tap and a 20 ms agent
frame (24 kHz) to the agent tap; each call's recording flushes every second into a temporary
volume directory (the writer thread resamples, interleaves, writes and patches the WAV header).
The same loop runs once without recordings as the baseline. Measured:

- CPU: process CPU time over wall time (cores), total and the added cost per recorded call;
- taps: time the taps take on the event loop per call and tick (p50, p99);
- tick lag: how late the playout tick ran (p99), with and without recordings;
- flush: the writer thread's time per flush (``voicefleet_recording_flush_seconds``: mean, p99 bucket);
- written: WAV bytes per second of all calls.

    python -m bench.recording [--calls 50] [--seconds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY

from agent_pod.config import RecordingSpec
from agent_pod.records.storage import RecordingStore
from bench.report import bucket_quantile, percentile, print_records, write_json

TICK = 0.02
FLUSH = "voicefleet_recording_flush_seconds"


def _flush_buckets() -> tuple[dict[float, float], float, float]:
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in REGISTRY.collect():
        if family.name == FLUSH:
            for sample in family.samples:
                if sample.name == FLUSH + "_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
                elif sample.name == FLUSH + "_sum":
                    total = sample.value
                elif sample.name == FLUSH + "_count":
                    count = sample.value
    return buckets, total, count


async def _run(calls: int, seconds: float, record: bool, root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(13)
    caller = (rng.normal(0, 3000, 160)).astype("<i2").tobytes()  # 20 ms at 8 kHz
    agent = (rng.normal(0, 3000, 480)).astype("<i2").tobytes()  # 20 ms at 24 kHz
    spec = RecordingSpec(enabled=True, sample_rate=16000, flush_seconds=1.0)
    store = RecordingStore(spec, "bench", root)
    recordings = [store.open(f"call-{i}") for i in range(calls)] if record else []
    for r in recordings:
        await r.start()
    buckets0, sum0, count0 = _flush_buckets()
    taps: list[float] = []
    lags: list[float] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    ticks = int(seconds / TICK)
    for k in range(ticks):
        due = wall0 + k * TICK
        lags.append(max(0.0, time.monotonic() - due))
        for r in recordings:
            t = time.perf_counter()
            r.caller(caller, 8000)
            r.agent(agent, 24000)
            taps.append(time.perf_counter() - t)
        await asyncio.sleep(max(0.0, wall0 + (k + 1) * TICK - time.monotonic()))
    infos = [await r.finish() for r in recordings]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    buckets1, sum1, count1 = _flush_buckets()
    flushes = count1 - count0
    written = sum(i.bytes for i in infos if i is not None)
    return {
        "mode": "recorded" if record else "baseline",
        "calls": calls,
        "cpu_cores": cpu / wall,
        "tap_us_p50": percentile(taps, 0.5) * 1e6 if taps else 0.0,
        "tap_us_p99": percentile(taps, 0.99) * 1e6 if taps else 0.0,
        "tick_lag_ms_p99": percentile(lags, 0.99) * 1000,
        "flush_ms_mean": (sum1 - sum0) / flushes * 1000 if flushes else 0.0,
        "flush_ms_p99_bucket": bucket_quantile(buckets0, buckets1, 0.99) * 1000 if flushes else 0.0,
        "flushes": int(flushes),
        "written_kb_per_s": written / wall / 1024,
    }


async def main(calls: int, seconds: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="vf-bench-rec-") as tmp:
        baseline = await _run(calls, seconds, False, Path(tmp))
        recorded = await _run(calls, seconds, True, Path(tmp))
    recorded["cpu_per_call_pct"] = (recorded["cpu_cores"] - baseline["cpu_cores"]) / calls * 100
    baseline["cpu_per_call_pct"] = 0.0
    return [baseline, recorded]


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    records = asyncio.run(main(args.calls, args.seconds))
    print_records(records)
    summary = {"bench": "recording", "calls": args.calls, "seconds": args.seconds, "runs": records}
    write_json(args.json, summary)


if __name__ == "__main__":
    cli()
