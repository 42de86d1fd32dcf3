"""Resume time after a pod loss, as callers see it, on real `voicefleet pod` processes.

Three pods (synthetic zero-latency pipeline) share one local redis-server; callers talk text
turns. One pod is SIGKILLed while it serves live sessions; every caller whose stream broke
asks SessionService to resume and reconnects to the new pod. Measured per resumed session:
stream broken -> SessionStarted (resumed, history restored) on the new pod. Also reported:
callers dropped (target 0) and history checks (restored turns == turns completed).

    python -m bench.chaos_resume [--sessions 60] [--pods 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path
from typing import Any

from bench.report import percentile, write_json
from tests.chaos.harness import Caller, Channels, ChaosFleet, Stats, chaos_config, run_callers
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for


async def _true(value: bool) -> bool:
    return value


async def run(sessions: int, pods: int) -> dict[str, Any]:
    redis = RedisServer()
    redis.start()
    workdir = Path(tempfile.mkdtemp(prefix="vf-chaos-resume-"))
    fleet = ChaosFleet(workdir, redis, chaos_config())
    channels = Channels()
    try:
        for _ in range(pods):
            await fleet.add()
        stats = Stats()
        callers = [Caller(f"c{i}", fleet, channels, stats, random.Random(i)) for i in range(sessions)]
        task = asyncio.ensure_future(
            run_callers(callers, [c.session(turns=12, think=(0.2, 0.5)) for c in callers])
        )
        await async_wait_for(
            lambda: _true(stats.live == sessions and min(stats.turns_in_window.values()) >= 2),
            timeout=120,
            what="live sessions",
        )
        state = await fleet.state()
        victim = max(state.pods, key=lambda p: p.load)
        await fleet.sigkill(fleet.pods[victim.name])
        await asyncio.wait_for(task, 300)
        times = stats.resume_seconds
        return {
            "sessions": sessions,
            "pods": pods,
            "sessions_on_killed_pod": victim.load,
            "resumed": len(times),
            "dropped": len(stats.dropped),
            "dropped_reasons": stats.dropped[:10],
            "resume_p50_ms": percentile(times, 0.5) * 1000 if times else None,
            "resume_p99_ms": percentile(times, 0.99) * 1000 if times else None,
            "resume_max_ms": max(times) * 1000 if times else None,
        }
    finally:
        await channels.close()
        await fleet.close()
        redis.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    r = asyncio.run(run(args.sessions, args.pods))
    rows = [
        ("sessions on the killed pod", f"{r['sessions_on_killed_pod']} of {r['sessions']}", ""),
        ("resumed with history intact", f"{r['resumed']}", "all"),
        ("dropped", f"{r['dropped']}", "0"),
        (
            "stream broken -> resumed on new pod",
            f"p50 {r['resume_p50_ms']:.0f} ms, p99 {r['resume_p99_ms']:.0f} ms, "
            f"max {r['resume_max_ms']:.0f} ms"
            if r["resumed"]
            else "-",
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
