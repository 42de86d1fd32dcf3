"""Live call migration: the gap each call hears when its pod drains, over gRPC and over WebRTC.

Two `voicefleet pod` processes (zero-latency synthetic pipeline, WebRTC on) share a local
redis-server. N callers of one transport open calls on pod A (the project's GrpcCaller or
WebRTCCaller, which follow moves) and say a typed turn; A gets SIGTERM and moves every call to B
at a quiet moment. Each caller then says another turn, which B must answer. Measured per call:

- gap: the old pod stops listening -> the new pod listens, held caller audio replayed
  (MigrationCompleted.gap_ms, both pods on this machine's clock);
- switch: the caller got the offer -> the new pod confirmed it listens (caller's clock);

plus how long A took to drain (SIGTERM -> exit) and calls lost (target 0).

    python -m bench.migration [--calls 50] [--transports grpc webrtc] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.record import CallRecorder
from agent_pod.client.webrtc_client import WebRTCCaller
from bench.report import percentile, print_records, write_json
from tests.chaos.harness import ChaosFleet
from tests.support.pod import synthetic_config
from tests.support.redis import RedisServer

ANSWER_SECONDS = 30.0


def _config(calls: int) -> Any:
    return synthetic_config(
        "hello there",
        agent="bench-" + uuid.uuid4().hex[:6],
        namespace="bench",
        session={
            "drainTimeoutSeconds": 600,
            "idleTimeoutSeconds": 600,
            "migration": {"quietWaitSeconds": 30, "followTimeoutSeconds": 10, "maxParallel": 10},
        },
        sessionsPerPod=calls + 10,
    )


def _at(recorder: CallRecorder, kind: str) -> tuple[float, dict[str, Any]] | None:
    for at, k, fields in recorder.events:
        if k == kind:
            return at, fields
    return None


async def _say(call: GrpcCaller | WebRTCCaller, text: str) -> None:
    before = len(call.recorder.summary.agent_texts)
    call.send_text(text)
    summary = await call.recorder.wait(lambda s: len(s.agent_texts) > before, ANSWER_SECONDS)
    if summary.agent_texts[before] != f"You said: {text}.":
        raise RuntimeError(f"wrong answer {summary.agent_texts[before]!r} to {text!r}")


async def run(transport: str, calls: int) -> dict[str, Any]:
    redis = RedisServer()
    redis.start()
    fleet = ChaosFleet(Path(tempfile.mkdtemp(prefix="vf-bench-migration-")), redis, _config(calls))
    callers: list[GrpcCaller | WebRTCCaller] = []
    try:
        old, new = await fleet.add(), await fleet.add()
        for _ in range(calls):
            if transport == "grpc":
                caller: GrpcCaller | WebRTCCaller = GrpcCaller(old.grpc_address)
            else:
                caller = WebRTCCaller(f"http://{old.host}:{old.http_port}/v1/webrtc")
            await caller.open()
            callers.append(caller)
        await asyncio.gather(*(_say(c, "before") for c in callers))
        started = time.monotonic()
        fleet.sigterm(old)
        code = await old.wait_exit(120)
        drain_s = time.monotonic() - started
        lost: list[str] = []

        async def after(call: GrpcCaller | WebRTCCaller) -> None:
            try:
                await call.recorder.wait(lambda _: _at(call.recorder, "migration_completed") is not None, 30)
                await _say(call, "after")
            except Exception as exc:
                lost.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(after(c) for c in callers))
        gaps, switches = [], []
        for call in callers:
            offer, completed = (
                _at(call.recorder, "migration_offer"),
                _at(call.recorder, "migration_completed"),
            )
            if offer and completed:
                gaps.append(completed[1]["gap_ms"] / 1000)
                switches.append(completed[0] - offer[0])
        on_new = sum(1 for call in callers if call.pods and call.pods[-1] == new.name)
        return {
            "transport": transport,
            "calls": calls,
            "moved": len(gaps),
            "lost": len(lost),
            "old_pod_exit": code,
            "drain_s": round(drain_s, 2),
            "on_new_pod": on_new,
            "gap_p50_ms": round(percentile(gaps, 0.5) * 1000, 1),
            "gap_p99_ms": round(percentile(gaps, 0.99) * 1000, 1),
            "gap_max_ms": round(max(gaps, default=0.0) * 1000, 1),
            "switch_p50_ms": round(percentile(switches, 0.5) * 1000, 1),
            "switch_p99_ms": round(percentile(switches, 0.99) * 1000, 1),
            "lost_reasons": lost[:5],
            "new_pod": new.name,
        }
    finally:
        for call in callers:
            with contextlib.suppress(Exception):
                await call.close()
        await fleet.close()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--transports", nargs="+", default=["grpc", "webrtc"], choices=["grpc", "webrtc"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = [asyncio.run(run(t, args.calls)) for t in args.transports]
    print_records([{k: v for k, v in r.items() if k not in ("lost_reasons", "new_pod")} for r in results])
    for r in results:
        for reason in r["lost_reasons"]:
            print(f"lost ({r['transport']}):", reason)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
