"""Sessions per core: gRPC sessions that talk continuously while output frames stay on time, and the
pod CPU each WebRTC session costs.

The pod runs in a subprocess with zero-latency providers; its CPU (all threads)
is read from /proc. Callers run in worker processes (``--per-worker`` sessions
each, see bench/transport_callers.py) and keep the agent talking (a long story,
asked again whenever one ends). gRPC callers (a lean raw client, one sender
tick per worker) stream 20 ms of quiet audio every 20 ms; output-frame lateness
is measured per talk spurt on the caller side: how much later than the spurt's
best-placed frame each frame arrives against its 20 ms schedule. The pod's own
view (its playout tick lateness, from /metrics) is shown beside it, with the
callers' CPU and event-loop lag: the machine's cores are shared by the pod and
the callers, so caller-side lateness includes the callers' share. The ramp
stops at the first step whose caller-side p99 lateness passes the bound.
Sessions per core = sessions / pod CPU cores used. WebRTC: pod CPU per second
of two-way audio (the caller's microphone sends quiet, the agent talks).

    python -m bench.transport_capacity [--grpc 25 50 100 150 200] [--webrtc 10 25 50] [--seconds 10]
        [--per-worker 25] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.report import percentile, print_table, write_json
from bench.transport_common import (
    CallerJob,
    PodRunner,
    Workers,
    client_summary,
    pod_process,
    zero_latency_config,
)

FRAME = 0.020
LATENESS_BOUND_MS = 20.0
WARMUP_SECONDS = 3.0


async def step(pod: PodRunner, kind: str, sessions: int, seconds: float, per_worker: int) -> dict[str, Any]:
    job = CallerJob(
        kind="grpc_load" if kind == "grpc" else "webrtc_load",
        grpc_address=pod.grpc_address,
        webrtc_url=pod.http_url + "/v1/webrtc",
        sessions=sessions,
        warmup_seconds=WARMUP_SECONDS,
        seconds=seconds,
    )
    async with Workers(job, per_worker) as workers:
        await workers.ready()
        start_at = time.monotonic() + 0.2
        workers.go(start_at)
        await asyncio.sleep(max(0.0, start_at + WARMUP_SECONDS - time.monotonic()))
        before = await pod.snapshot()
        await asyncio.sleep(max(0.0, start_at + WARMUP_SECONDS + seconds - time.monotonic()))
        window = await pod.since(before, kind)
        results = await workers.results()
    frames = sum(r.frames for r in results)
    row = {
        "sessions": sessions,
        "pod_cores": window.cores,
        "sessions_per_core": sessions / window.cores if window.cores else float("inf"),
        "frames_per_session_per_s": frames / sessions / seconds,
        "pod_tick_lateness_p99_ms_at_most": window.tick_lateness_p99_ms_at_most,
        "pod_send_delay_p50_ms_at_most": window.send_delay_p50_ms_at_most,
        "pod_send_delay_p99_ms_at_most": window.send_delay_p99_ms_at_most,
        "failed": sum(len(r.failed) for r in results),
        **client_summary(results),
    }
    if kind == "grpc":
        late = [v for r in results for v in r.lateness_ms]
        row["lateness_p50_ms"] = percentile(late, 0.5)
        row["lateness_p99_ms"] = percentile(late, 0.99)
    else:
        row["cpu_ms_per_audio_s"] = window.cores / sessions * 1000
        row["min_audible_frames"] = min(r.min_audible_frames for r in results)
        # Every caller must have heard the agent talk most of the window, or the pod idled for want of work.
        row["valid"] = row["min_audible_frames"] >= 0.5 * seconds / FRAME and row["failed"] == 0
    return row


async def run(
    grpc_steps: list[int], webrtc_steps: list[int], seconds: float, per_worker: int
) -> dict[str, Any]:
    results: dict[str, Any] = {"grpc": [], "webrtc": []}
    config = zero_latency_config(idleTimeoutSeconds=3600)
    if grpc_steps:
        async with pod_process(config) as pod:
            for n in grpc_steps:
                row = await step(pod, "grpc", n, seconds, per_worker)
                results["grpc"].append(row)
                print(f"grpc {n}: {row}", flush=True)
                if row["lateness_p99_ms"] > LATENESS_BOUND_MS:
                    break
    if webrtc_steps:
        async with pod_process(config) as pod:
            for n in webrtc_steps:
                row = await step(pod, "webrtc", n, seconds, min(per_worker, 10))
                results["webrtc"].append(row)
                print(f"webrtc {n}: {row}", flush=True)
    return results


GRPC_COLUMNS = [
    ("gRPC sessions", "sessions"),
    ("pod cores", "pod_cores"),
    ("sessions/core", "sessions_per_core"),
    ("frames/s/session", "frames_per_session_per_s"),
    ("late p50 ms", "lateness_p50_ms"),
    ("late p99 ms", "lateness_p99_ms"),
    ("pod tick p99 <= ms", "pod_tick_lateness_p99_ms_at_most"),
    ("pod send p50 <= ms", "pod_send_delay_p50_ms_at_most"),
    ("pod send p99 <= ms", "pod_send_delay_p99_ms_at_most"),
    ("failed", "failed"),
    ("workers", "workers"),
    ("client cores", "client_cores"),
    ("client lag p99 ms", "client_loop_lag_p99_ms"),
]
WEBRTC_COLUMNS = [
    ("WebRTC sessions", "sessions"),
    ("pod cores", "pod_cores"),
    ("CPU ms per audio s", "cpu_ms_per_audio_s"),
    ("sessions/core", "sessions_per_core"),
    ("pod tick p99 <= ms", "pod_tick_lateness_p99_ms_at_most"),
    ("pod send p99 <= ms", "pod_send_delay_p99_ms_at_most"),
    ("min audible frames", "min_audible_frames"),
    ("valid", "valid"),
    ("workers", "workers"),
    ("client cores", "client_cores"),
    ("client lag p99 ms", "client_loop_lag_p99_ms"),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grpc", type=int, nargs="*", default=[25, 50, 100, 150, 200])
    parser.add_argument("--webrtc", type=int, nargs="*", default=[10, 25, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--per-worker", type=int, default=25, help="gRPC sessions per caller process (WebRTC: 10)"
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.grpc, args.webrtc, args.seconds, args.per_worker))
    if results["grpc"]:
        rows = results["grpc"]
        print_table([t for t, _ in GRPC_COLUMNS], [[r[k] for _, k in GRPC_COLUMNS] for r in rows])
        ok = [r for r in rows if r["lateness_p99_ms"] <= LATENESS_BOUND_MS]
        if ok:
            best = max(ok, key=lambda r: r["sessions"])
            print(
                f"max gRPC sessions with caller-side p99 lateness <= {LATENESS_BOUND_MS:g} ms: "
                f"{best['sessions']} ({best['sessions_per_core']:.0f} per pod core)"
            )
    if results["webrtc"]:
        rows = results["webrtc"]
        print_table([t for t, _ in WEBRTC_COLUMNS], [[r[k] for _, k in WEBRTC_COLUMNS] for r in rows])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
