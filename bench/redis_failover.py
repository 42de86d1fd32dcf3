"""Sentinel failover under live calls, on real `voicefleet pod` processes.

Three pods (synthetic zero-latency pipeline) on a Sentinel group (1 master, 2 replicas, 3
sentinels, down-after 1 s); callers talk text turns on every live call. The master is SIGKILLed.
Reported: calls dropped (target 0), time until the sentinels named a new master, the placement
gap (kill -> first new session placed through Redis again; pods grant from local state meanwhile),
and what the prober got in between.

    python -m bench.redis_failover [--calls 100] [--pods 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.report import percentile, write_json
from tests.chaos.failover import run_failover
from tests.chaos.harness import ChaosFleet, chaos_config
from tests.support.redis_ha import SentinelGroup


async def run(calls: int, pods: int) -> dict[str, Any]:
    group = SentinelGroup(replicas=2)
    group.start()
    fleet = ChaosFleet(Path(tempfile.mkdtemp(prefix="vf-redis-failover-")), group, chaos_config())
    try:
        for _ in range(pods):
            await fleet.add()
        result = await run_failover(fleet, calls)
        answers = result.stats.answer_seconds
        return {
            "calls": calls,
            "pods": pods,
            "dropped": len(result.stats.dropped),
            "dropped_reasons": result.stats.dropped[:10],
            "sessions_completed": result.stats.sessions_completed,
            "failover_seconds": result.failover_seconds,
            "placement_gap_seconds": result.placement_gap_seconds,
            "local_grants_during_gap": result.local_grants,
            "refused_during_gap": result.refused,
            "answer_p99_ms": percentile(answers, 0.99) * 1000 if answers else None,
            "answer_max_ms": max(answers) * 1000 if answers else None,
        }
    finally:
        await fleet.close()
        group.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    r = asyncio.run(run(args.calls, args.pods))
    rows = [
        ("live calls when the master died", f"{r['calls']} on {r['pods']} pods", ""),
        ("dropped", f"{r['dropped']}", "0"),
        ("kill -> sentinels name a new master", f"{r['failover_seconds']:.2f} s", ""),
        ("placement gap: kill -> placed through Redis", f"{r['placement_gap_seconds']:.2f} s", "a few s"),
        (
            "new sessions meanwhile",
            f"{r['local_grants_during_gap']} granted locally, {r['refused_during_gap']} refused",
            "",
        ),
        (
            "turn answer time, whole run",
            f"p99 {r['answer_p99_ms']:.0f} ms, max {r['answer_max_ms']:.0f} ms",
            "",
        ),
    ]
    width = max(len(a) for a, _, _ in rows)
    print(f"{'measure':<{width}}  {'result':<44}  target")
    print("-" * (width + 56))
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:<44}  {c}")
    write_json(args.json, r)


if __name__ == "__main__":
    main()
