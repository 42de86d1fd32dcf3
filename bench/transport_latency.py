"""Platform-added latency: end of the caller's turn -> first agent audio frame, seen by pod and callers.

The pod runs in a subprocess with zero-latency providers (energy VAD, synthetic
STT/TTS, scripted LLM); the callers run in worker processes (``--per-worker``
sessions each, see bench/transport_callers.py). Each caller says a 0.4 s tone
and goes quiet, ``--turns`` times, its first turn at a random moment within a
second. Columns, per turn:

* pod: the pod's end-of-turn decision -> the first agent frame handed to the
  transport (TurnMetrics.response_latency_ms). This is the target's quantity
  (DESIGN.md: p50 <= 30 ms, p99 <= 60 ms at 50 sessions). It includes the wait
  for the next 20 ms playout tick (0-20 ms): the first frame takes the next
  slot of the outgoing audio stream.
* added: what a caller measures, its end of speech -> the first audible agent
  frame it decoded, minus the ``minSilenceMs`` of quiet the VAD must hear
  before it may decide (300 ms).
* input audio: the part of ``added`` that is audio time, not processing: how
  much later than ``minSilenceMs`` after the end of speech the pod decides when
  fed the same audio through the transport's receive path offline (WebRTC: the
  caller's Opus encoder lookahead, the pod's decoding and resampling to the
  VAD's rate, and the VAD's 20 ms windows).
* rest p50 = added - pod - stt_final - input audio: the network and both
  ends' send/receive processing, the caller's included. The callers' own load
  (CPU cores of all workers, their worst event-loop lag) is shown to tell when
  the client side, not the pod, is what a row measures; the pod's CPU and its
  playout tick lateness are shown too. The machine's cores are shared by the
  pod and the callers: a row where pod + client cores approach the machine's
  core count measures the machine's saturation.

    python -m bench.transport_latency [--sessions 1 10 50] [--turns 5] [--transports grpc webrtc]
        [--per-worker 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from bench.report import percentile, print_table, write_json
from bench.transport_common import (
    MIN_SILENCE_MS,
    CallerJob,
    PodRunner,
    Workers,
    client_summary,
    pod_process,
    zero_latency_config,
)
from bench.transport_input import input_audio_delay_ms

COLUMNS = [
    ("transport", "transport"),
    ("sessions", "sessions"),
    ("turns", "turns"),
    ("failed", "failed_sessions"),
    ("pod p50", "pod_p50_ms"),
    ("pod p99", "pod_p99_ms"),
    ("added p50", "added_p50_ms"),
    ("added p99", "added_p99_ms"),
    ("stt_final p50", "stt_final_p50_ms"),
    ("input audio", "input_audio_ms"),
    ("rest p50", "rest_p50_ms"),
    ("rest p99", "rest_p99_ms"),
    ("pod cores", "pod_cores"),
    ("pod tick p99 <=", "pod_tick_lateness_p99_ms_at_most"),
    ("pod send p99 <=", "pod_send_delay_p99_ms_at_most"),
    ("workers", "workers"),
    ("client cores", "client_cores"),
    ("client lag p99", "client_loop_lag_p99_ms"),
]


async def measure(
    pod: PodRunner, transport: str, sessions: int, turns: int, per_worker: int, input_ms: float
) -> dict[str, Any]:
    job = CallerJob(
        kind="latency",
        transport="grpc" if transport == "grpc" else "webrtc",
        grpc_address=pod.grpc_address,
        webrtc_url=pod.http_url + "/v1/webrtc",
        sessions=sessions,
        turns=turns,
    )
    async with Workers(job, per_worker) as workers:
        await workers.ready()
        before = await pod.snapshot()
        workers.go(time.monotonic() + 0.2)
        results = await workers.results()
        window = await pod.since(before, transport)
    turns_ = [t for r in results for t in r.turns]
    added = [t.added_ms for t in turns_]
    pod_ms = [t.pod_ms for t in turns_ if t.pod_ms is not None]
    stt = [t.stt_final_ms for t in turns_ if t.stt_final_ms is not None]
    rest = [
        t.added_ms - t.pod_ms - t.stt_final_ms - input_ms
        for t in turns_
        if t.pod_ms is not None and t.stt_final_ms is not None
    ]
    failed = [f for r in results for f in r.failed]
    if failed:
        print(f"{transport} x{sessions}: {len(failed)} sessions failed, e.g. {failed[0]}", flush=True)
    return {
        "transport": transport,
        "sessions": sessions,
        "turns": len(turns_),
        "failed_sessions": len(failed),
        "added_p50_ms": percentile(added, 0.5),
        "added_p99_ms": percentile(added, 0.99),
        "pod_p50_ms": percentile(pod_ms, 0.5),
        "pod_p99_ms": percentile(pod_ms, 0.99),
        "stt_final_p50_ms": percentile(stt, 0.5),
        "input_audio_ms": input_ms,
        "rest_p50_ms": percentile(rest, 0.5),
        "rest_p99_ms": percentile(rest, 0.99),
        "pod_cores": window.cores,
        "pod_tick_lateness_p99_ms_at_most": window.tick_lateness_p99_ms_at_most,
        "pod_send_delay_p99_ms_at_most": window.send_delay_p99_ms_at_most,
        **client_summary(results),
    }


async def run(
    sessions: list[int], turns: int, transports: list[str], per_worker: int
) -> list[dict[str, Any]]:
    results = []
    async with pod_process(zero_latency_config()) as pod:
        for transport in transports:
            input_ms = await input_audio_delay_ms(transport)
            for n in sessions:
                row = await measure(pod, transport, n, turns, per_worker, input_ms)
                print(row, flush=True)
                results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--transports", nargs="+", default=["grpc", "webrtc"], choices=["grpc", "webrtc"])
    parser.add_argument("--per-worker", type=int, default=10, help="sessions per caller process")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.sessions, args.turns, args.transports, args.per_worker))
    print_table([title for title, _ in COLUMNS], [[r[key] for _, key in COLUMNS] for r in results])
    print(
        f"all times in ms; added = caller's end of speech -> first audible agent frame - minSilenceMs "
        f"({MIN_SILENCE_MS}); rest = added - pod - stt_final - input audio (network and both ends' "
        f"processing); this machine has {os.cpu_count()} cores for the pod and the callers together"
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
