"""Live transfer of calls from one VoiceAgent to another: how long from the decision until the target
agent serves the caller.

Two agents ("front" with ``spec.transfer``, "billing") run as `voicefleet pod` processes (zero-latency
synthetic pipeline and scripted LLM) on one local redis-server. N gRPC callers (the project's
GrpcCaller, which follows moves) open calls on the front pod and say a typed turn; then each call is
transferred through the session API (``POST /v1/sessions/{id}/transfer``), all at once. Each caller
says its next turn as soon as the move is offered (the front pod holds it, the billing pod replays it).
Measured per call, on the caller's clock from the moment the API request is sent:

- accepted: the API answered 202 (target checked, move started);
- offer: the caller got the MigrationOffer (call frozen, placed on a billing pod);
- listening: the caller got MigrationCompleted (the billing pod listens; held input replayed);
- heard: the billing pod's transcript of the turn said during the move (the caller's first input
  served by the target);
- answered: the billing agent's final answer to it (includes playing the answer's audio in real time);

plus ``voicefleet_transfer_seconds`` as the billing pods measured it (decision -> listening; bucket
upper bounds) and calls lost (target 0).

    python -m bench.transfer [--calls 20] [--policy full|summary|none] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent_pod.client.grpc_client import GrpcCaller
from bench.report import bucket_quantile, percentile, print_records, write_json
from tests.chaos.harness import ChaosFleet, ChaosPod
from tests.support.pod import synthetic_config
from tests.support.redis import RedisServer

WITHIN = 30.0
HISTOGRAM = "voicefleet_transfer_seconds"


def _configs(calls: int, policy: str) -> tuple[Any, Any]:
    suffix = uuid.uuid4().hex[:6]
    common: dict[str, Any] = {
        "namespace": "bench",
        "transport": {"webrtc": {"enabled": False}},
        "session": {"idleTimeoutSeconds": 600, "migration": {"followTimeoutSeconds": 10}},
        "sessionsPerPod": calls + 10,
    }
    billing = synthetic_config("unused", agent=f"billing-{suffix}", **common)
    transfer = {"targets": [billing.agent], "contextPolicy": policy, "quietWaitSeconds": 30}
    front = synthetic_config("unused", agent=f"front-{suffix}", transfer=transfer, **common)
    return front, billing


async def _histogram(pod: ChaosPod) -> dict[float, float]:
    """Cumulative bucket counts of the transfer histogram on ``pod`` (by upper bound)."""
    url = f"http://{pod.host}:{pod.metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == HISTOGRAM:
            for sample in family.samples:
                if sample.name == HISTOGRAM + "_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
    return buckets


async def _say(call: GrpcCaller, text: str) -> None:
    before = len(call.recorder.summary.agent_texts)
    call.send_text(text)
    summary = await call.recorder.wait(lambda s: len(s.agent_texts) > before, WITHIN)
    if summary.agent_texts[before] != f"You said: {text}.":
        raise RuntimeError(f"wrong answer {summary.agent_texts[before]!r} to {text!r}")


def _seen(call: GrpcCaller, kind: str) -> bool:
    return any(k == kind for _, k, _ in call.recorder.events)


async def _transfer(
    http: aiohttp.ClientSession, front: ChaosPod, target: str, call: GrpcCaller
) -> dict[str, float]:
    url = f"http://{front.host}:{front.http_port}/v1/sessions/{call.session_id}/transfer"
    started = time.perf_counter()
    async with http.post(url, json={"target": target}) as resp:
        if resp.status != 202:
            raise RuntimeError(f"transfer refused: {resp.status} {await resp.text()}")
    accepted = time.perf_counter()
    await call.recorder.wait(lambda _: _seen(call, "migration_offer"), WITHIN)
    offer = time.perf_counter()
    serving = asyncio.ensure_future(_say(call, "after"))  # held by the front pod, heard by billing
    await call.recorder.wait(lambda _: _seen(call, "migration_completed"), WITHIN)
    listening = time.perf_counter()
    await call.recorder.wait(lambda s: "after" in s.transcripts, WITHIN)
    heard = time.perf_counter()
    await serving
    answered = time.perf_counter()
    return {
        "accepted": accepted - started,
        "offer": offer - started,
        "listening": listening - started,
        "heard": heard - started,
        "answered": answered - started,
    }


async def run(calls: int, policy: str, billing_pods: int) -> dict[str, Any]:
    redis = RedisServer()
    redis.start()
    work = Path(tempfile.mkdtemp(prefix="vf-bench-transfer-"))
    front_config, billing_config = _configs(calls, policy)
    (work / "front").mkdir()
    (work / "billing").mkdir()
    fronts = ChaosFleet(work / "front", redis, front_config)
    billings = ChaosFleet(work / "billing", redis, billing_config)
    callers: list[GrpcCaller] = []
    try:
        front, *targets = await asyncio.gather(fronts.add(), *(billings.add() for _ in range(billing_pods)))
        before = [await _histogram(pod) for pod in targets]
        for _ in range(calls):
            caller = GrpcCaller(front.grpc_address)
            await caller.open()
            callers.append(caller)
        await asyncio.gather(*(_say(c, "before") for c in callers))
        lost: list[str] = []
        timings: list[dict[str, float]] = []

        async def one(http: aiohttp.ClientSession, call: GrpcCaller) -> None:
            try:
                timings.append(await _transfer(http, front, billing_config.agent, call))
            except Exception as exc:
                lost.append(f"{type(exc).__name__}: {exc}")

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http, c) for c in callers))
        after = [await _histogram(pod) for pod in targets]
        summed_before = {b: sum(h.get(b, 0.0) for h in before) for b in after[0]}
        summed_after = {b: sum(h.get(b, 0.0) for h in after) for b in after[0]}
        on_billing = sum(1 for c in callers if c.pods and c.pods[-1] in {p.name for p in targets})
        result: dict[str, Any] = {"policy": policy, "calls": calls, "billing_pods": billing_pods}
        result |= {"transferred": len(timings), "lost": len(lost), "on_target": on_billing}
        for key in ("accepted", "offer", "listening", "heard", "answered"):
            values = [t[key] for t in timings]
            result[f"{key}_p50_ms"] = round(percentile(values, 0.5) * 1000, 1)
            result[f"{key}_p99_ms"] = round(percentile(values, 0.99) * 1000, 1)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            bound = bucket_quantile(summed_before, summed_after, q)
            result[f"histogram_{name}_le_ms"] = round(bound * 1000, 1)
        result["lost_reasons"] = lost[:5]
        return result
    finally:
        await asyncio.gather(*(call.close() for call in callers), return_exceptions=True)
        await fronts.close()
        await billings.close()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--policy", default="full", choices=["full", "summary", "none"])
    parser.add_argument("--billing-pods", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.policy, args.billing_pods))
    print_records([{k: v for k, v in result.items() if k != "lost_reasons"}])
    for reason in result["lost_reasons"]:
        print("lost:", reason)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
