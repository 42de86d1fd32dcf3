"""Platform-added latency: end of the caller's turn -> first agent audio frame received by the caller.

The pod runs in a subprocess with zero-latency providers (energy VAD, synthetic
STT/TTS, scripted LLM); the callers run here. Each caller says a 0.4 s tone and
goes quiet; the pod's VAD decides the turn ended once it has heard
``minSilenceMs`` of quiet, so the platform's share is the caller-measured time
from its end of speech to the first audible agent frame, minus ``minSilenceMs``.
The pod's own view (TurnMetrics: decision -> first frame out) is shown too.

    python -m bench.transport_latency [--sessions 1 10 50] [--turns 5] [--transports grpc webrtc]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
from typing import Any

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.webrtc_client import WebRTCCaller
from bench.transport_common import (
    MIN_SILENCE_MS,
    percentile,
    pod_process,
    print_table,
    tone,
    write_json,
    zero_latency_config,
)

SPEECH_SECONDS = 0.4


async def one_caller(
    transport: str, pod: Any, turns: int, start_delay: float
) -> tuple[list[float], list[float]]:
    await asyncio.sleep(start_delay)
    caller: GrpcCaller | WebRTCCaller
    if transport == "grpc":
        caller = GrpcCaller(pod.grpc_address, sample_rate=16000, output_sample_rate=16000)
    else:
        caller = WebRTCCaller(pod.http_url + "/v1/webrtc")
    rate = caller.sample_rate
    speech_end = int(SPEECH_SECONDS * 1000 / 20)
    async with caller:
        recorder = caller.recorder
        for turn in range(1, turns + 1):
            await caller.play(
                tone(rate, SPEECH_SECONDS, silence_after=MIN_SILENCE_MS / 1000 + 0.2), [speech_end]
            )
            await recorder.wait(lambda s, n=turn: len(s.agent_texts) >= n and len(s.latencies) >= n, 60)
        await caller.end()
    summary = recorder.summary
    client = [t.latency_ms - MIN_SILENCE_MS for t in summary.latencies]
    pod_side = [float(m["response_latency_ms"]) for m in summary.turn_metrics]
    return client, pod_side


async def run(sessions: list[int], turns: int, transports: list[str]) -> list[dict[str, Any]]:
    results = []
    async with pod_process(zero_latency_config()) as pod:
        for transport in transports:
            for n in sessions:
                # Starts spread over a second: callers do not all end their turns on the same tick.
                outcomes = await asyncio.gather(
                    *(one_caller(transport, pod, turns, random.uniform(0, 1.0)) for _ in range(n)),
                    return_exceptions=True,
                )
                failed = [o for o in outcomes if isinstance(o, BaseException)]
                client = [v for o in outcomes if not isinstance(o, BaseException) for v in o[0]]
                pod_side = [v for o in outcomes if not isinstance(o, BaseException) for v in o[1]]
                results.append(
                    {
                        "transport": transport,
                        "sessions": n,
                        "turns": len(client),
                        "failed_sessions": len(failed),
                        "platform_p50_ms": percentile(client, 0.5),
                        "platform_p99_ms": percentile(client, 0.99),
                        "pod_p50_ms": percentile(pod_side, 0.5),
                        "pod_p99_ms": percentile(pod_side, 0.99),
                    }
                )
                if failed:
                    print(f"{transport} x{n}: {len(failed)} sessions failed: {failed[0]!r}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--transports", nargs="+", default=["grpc", "webrtc"], choices=["grpc", "webrtc"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args.sessions, args.turns, args.transports))
    print_table(
        ["transport", "sessions", "turns", "failed",
         "added p50 ms", "added p99 ms", "pod p50 ms", "pod p99 ms"],
        [
            [
                r["transport"], r["sessions"], r["turns"], r["failed_sessions"],
                r["platform_p50_ms"], r["platform_p99_ms"], r["pod_p50_ms"], r["pod_p99_ms"],
            ]
            for r in results
        ],
    )  # fmt: skip
    print(
        "added = caller's end of speech -> first audible agent frame received, "
        f"minus minSilenceMs ({MIN_SILENCE_MS})"
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
