"""Session placement against a real local redis-server.

Measures, with several pod directories (each its own Redis client) in this process:
  - create (placement + pin: SMEMBERS + one Lua script) latency, sequential, p50/p99;
  - create throughput with concurrent callers spread over the pods;
  - load imbalance under churn with uneven session lengths: max pod load / average,
    checked after every placement (target <= 1.25);
  - live sessions moved when pods are added (target 0);
  - resume after a pod loss: ResumeSession on a survivor (probe, re-place) plus the
    admission on the new pod that restores the conversation, p50/p99.

    python -m bench.placement [--pods 8] [--sessions 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from agent_pod.conversation import ChatMessage, Conversation
from agent_pod.sessions.directory import Grant, PodIdentity
from agent_pod.sessions.fleet_state import read_fleet
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import connect_redis
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.sessions.tokens import ResumeTokens
from bench.report import percentile, write_json
from tests.support.redis import RedisServer

PROMPT = "bench@sha256:0"
TOKENS = ResumeTokens(b"bench-resume-key-0123456789abcdef", 3600)


class BenchFleet:
    def __init__(self, url: str, name: str, capacity: int) -> None:
        self.url = url
        self.keys = AgentKeys("bench", name)
        self.capacity = capacity
        self.pods: dict[str, RedisDirectory] = {}
        self.listeners: dict[str, asyncio.Server] = {}

    async def add(self, name: str) -> RedisDirectory:
        # a real listener stands in for the pod's gRPC port (resume probes it)
        listener = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        identity = PodIdentity(
            name=name, grpc_address=f"127.0.0.1:{port}", http_url=f"http://127.0.0.1:{port}"
        )
        directory = RedisDirectory(
            connect_redis(self.url), self.keys, identity, self.capacity, TOKENS, prompt_id=PROMPT
        )
        await directory.start()
        self.pods[name], self.listeners[name] = directory, listener
        return directory

    async def kill(self, name: str) -> None:
        """SIGKILL stand-in: heartbeats stop, nothing deregisters, the port closes."""
        await self.pods.pop(name).abandon()
        self.listeners.pop(name).close()

    async def close(self) -> None:
        for directory in self.pods.values():
            await directory.aclose()
        for listener in self.listeners.values():
            listener.close()


async def bench_create_latency(url: str, pods: int, n: int) -> dict[str, float]:
    fleet = BenchFleet(url, "latency", capacity=n)
    for i in range(pods):
        await fleet.add(f"pod-{i}")
    apis = list(fleet.pods.values())
    for i in range(50):  # warm-up: scripts loaded, connections open
        await apis[i % pods].create({})
    samples: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        await apis[i % pods].create({})
        samples.append(time.perf_counter() - started)
    await fleet.close()
    return {
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


async def bench_create_throughput(url: str, pods: int, n: int, concurrency: int) -> dict[str, float]:
    fleet = BenchFleet(url, "throughput", capacity=n)
    for i in range(pods):
        await fleet.add(f"pod-{i}")
    apis = list(fleet.pods.values())
    queue = list(range(n))
    samples: list[float] = []

    async def worker(k: int) -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            await apis[k % pods].create({})
            samples.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    await fleet.close()
    return {
        "creates_per_second": n / elapsed,
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


async def bench_imbalance(url: str, pods: int, placements: int, per_pod: int) -> dict[str, float]:
    """Churn with uneven (exponential) session lengths at a steady ~per_pod sessions per pod."""
    fleet = BenchFleet(url, "imbalance", capacity=per_pod * 4)
    for i in range(pods):
        await fleet.add(f"pod-{i}")
    apis = list(fleet.pods.values())
    rng = random.Random(1)
    loads = dict.fromkeys(fleet.pods, 0)
    live: list[tuple[float, str, str]] = []  # (end time in placements, session, pod)
    worst = chosen_worst = 0.0
    ratios: list[float] = []
    target = per_pod * pods
    for step in range(placements):
        live.sort()
        while live and (live[0][0] <= step or len(live) >= target):
            _, sid, pod = live.pop(0)
            await fleet.pods[pod].release(sid, "completed")
            loads[pod] -= 1
        grant = await apis[step % pods].create({})
        await fleet.pods[grant.pod].admit(grant.session_id, grant.resume_token, PROMPT)
        loads[grant.pod] += 1
        live.append((step + rng.expovariate(1 / target), grant.session_id, grant.pod))
        if step >= target:  # steady state
            average = sum(loads.values()) / pods
            chosen_worst = max(chosen_worst, loads[grant.pod] / average)
            ratio = max(loads.values()) / average
            ratios.append(ratio)
            worst = max(worst, ratio)
    state = await read_fleet(fleet.pods["pod-0"].redis, "bench", "imbalance")
    assert {p.name: p.load for p in state.pods} == loads, "Redis loads disagree with the bench's count"
    await fleet.close()
    return {
        "chosen_over_avg_worst": chosen_worst,
        "max_over_avg_worst": worst,
        "max_over_avg_mean": statistics.fmean(ratios),
        "sessions_per_pod": per_pod,
    }


async def bench_scale_out(url: str, pods: int, sessions: int) -> dict[str, float]:
    fleet = BenchFleet(url, "scaleout", capacity=sessions)
    for i in range(pods):
        await fleet.add(f"pod-{i}")
    grants = [await fleet.pods["pod-0"].create({}) for _ in range(sessions)]
    for g in grants:
        await fleet.pods[g.pod].admit(g.session_id, g.resume_token, PROMPT)
    for i in range(pods, pods * 2):
        await fleet.add(f"pod-{i}")
    newest = fleet.pods[f"pod-{pods * 2 - 1}"]
    moved = 0
    for g in grants:
        moved += (await newest.resume(g.session_id, g.resume_token)).pod != g.pod
    await fleet.close()
    return {"live_sessions": sessions, "pods_added": pods, "moved": moved}


async def bench_resume_after_loss(url: str, pods: int, sessions: int) -> dict[str, float]:
    fleet = BenchFleet(url, "resume", capacity=sessions)
    for i in range(pods):
        await fleet.add(f"pod-{i}")
    victim = fleet.pods["pod-0"]
    grants: list[Grant] = []
    while len(grants) < sessions:  # sessions that live on the victim
        g = await fleet.pods["pod-1"].create({})
        await fleet.pods[g.pod].admit(g.session_id, g.resume_token, PROMPT)
        if g.pod == "pod-0":
            messages = [ChatMessage(role="user", content=f"turn {t}") for t in range(6)]
            await victim.snapshot(
                Conversation(session_id=g.session_id, prompt_id=PROMPT, messages=messages, turns=3)
            )
            grants.append(g)
    await fleet.kill("pod-0")
    survivors = list(fleet.pods.values())
    samples: list[float] = []
    restored = 0
    for i, g in enumerate(grants):
        started = time.perf_counter()
        moved = await survivors[i % len(survivors)].resume(g.session_id, g.resume_token)
        admission = await fleet.pods[moved.pod].admit(g.session_id, g.resume_token, PROMPT)
        samples.append(time.perf_counter() - started)
        restored += bool(admission.conversation and admission.conversation.turns == 3)
    await fleet.close()
    return {
        "sessions": sessions,
        "restored": restored,
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer()
    server.start()
    try:
        results = {
            "create_latency": await bench_create_latency(server.url, args.pods, args.sessions),
            "create_throughput": await bench_create_throughput(server.url, args.pods, args.sessions, 32),
            "imbalance": await bench_imbalance(server.url, args.pods, args.sessions * 3, per_pod=25),
            "scale_out": await bench_scale_out(server.url, args.pods, min(args.sessions, 400)),
            "resume_after_loss": await bench_resume_after_loss(server.url, args.pods, 100),
        }
        probe = Redis.from_url(server.url)
        results["redis_version"] = (await probe.info("server"))["redis_version"]
        await probe.aclose()
        return results
    finally:
        server.cleanup()


def table(r: dict[str, Any], pods: int) -> str:
    c, t, i, s, z = (
        r[k] for k in ("create_latency", "create_throughput", "imbalance", "scale_out", "resume_after_loss")
    )
    rows = [
        ("placement + pin, sequential", f"p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms", "p99 <= 2 ms"),
        ("placement + pin, 32 concurrent", f"{t['creates_per_second']:.0f}/s, p99 {t['p99_ms']:.2f} ms", ""),
        ("placed pod's load / avg, after placing", f"worst {i['chosen_over_avg_worst']:.3f}", "<= 1.25"),
        (
            f"max/avg load ({pods} pods, churn)",
            f"worst {i['max_over_avg_worst']:.3f}, mean {i['max_over_avg_mean']:.3f}",
            "<= 1.25",
        ),
        (
            "sessions moved on scale-out",
            f"{s['moved']} of {s['live_sessions']} (+{s['pods_added']} pods)",
            "0",
        ),
        (
            "resume after pod loss (resume + admit)",
            f"p50 {z['p50_ms']:.2f} ms, p99 {z['p99_ms']:.2f} ms, {z['restored']}/{z['sessions']} restored",
            "100% restored",
        ),
    ]
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{'measure':<{width}}  {'result':<48}  target", "-" * (width + 60)]
    lines += [f"{a:<{width}}  {b:<48}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(table(results, args.pods))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
