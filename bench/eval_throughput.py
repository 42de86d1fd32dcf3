"""How many eval scenarios per minute `voicefleet eval` runs against one pod, in text and audio mode.

The pod runs the embedded offline pipeline (silero VAD, pocketsphinx with a small vocabulary,
scripted LLM, espeak-ng) in this process, as `voicefleet eval --agent` runs it. Each scenario is a
two-turn call: a greeting and a question, each answered with a spoken sentence that plays in real
time (what the caller hears is the record). Text mode types the turns; audio mode speaks them with
espeak-ng, streamed in real time with a second of trailing silence, through VAD and STT. Calls run
``--parallel`` at a time; throughput is bounded by real-time playback per call, so it grows with
parallelism until the CPU (speech recognition, synthesis, both sides of every call) runs out.

    python -m bench.eval_throughput [--scenarios 16] [--parallel 1,4,8] [--modes text,audio] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from agent_pod.config import AgentConfig
from agent_pod.evals.loader import load_suite_text
from agent_pod.evals.outcome import percentile
from agent_pod.evals.runner import RunOptions, run_evals
from agent_pod.evals.targets import local_pod
from bench.report import print_records, write_json

SCENARIO = """
  - name: caller-{n}
    turns:
      - say: hello
        expect: [{{contains: help}}]
      - type: what is the weather like today
        expect: [{{contains: weather}}, {{no_tool: true}}]
"""


def suite_text(scenarios: int) -> str:
    return "suite: throughput\nscenarios:" + "".join(SCENARIO.format(n=n) for n in range(scenarios))


def offline_agent() -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "agent": "bench-eval",
            "pipeline": {"stt": {"vocabulary": ["hello", "weather", "story"]}},
            "sessionsPerPod": 1000,
        }
    )


async def measure(mode: str, parallel: int, scenarios: int) -> dict[str, Any]:
    suite = load_suite_text(suite_text(scenarios), "bench")
    async with local_pod(offline_agent()) as target:
        started = time.monotonic()
        report = await run_evals([suite], target, RunOptions(parallel=parallel, mode=mode))  # type: ignore[arg-type]
        elapsed = time.monotonic() - started
    calls = [r.record.duration_ms / 1000 for o in report.outcomes for r in o.runs]
    return {
        "mode": mode,
        "parallel": parallel,
        "scenarios": scenarios,
        "passed": report.passed,
        "seconds": round(elapsed, 1),
        "scenarios_per_minute": round(scenarios / elapsed * 60, 1),
        "call_p50_s": round(percentile(calls, 50) or 0.0, 2),
        "call_max_s": round(max(calls, default=0.0), 2),
        "a_failure": next((o.first_failure[:70] for o in report.failed if o.first_failure), "-"),
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for mode in args.modes.split(","):
        for parallel in (int(p) for p in args.parallel.split(",")):
            records.append(await measure(mode, parallel, args.scenarios))
            print(records[-1], flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", type=int, default=16, help="scenarios per measurement")
    parser.add_argument("--parallel", default="1,4,8", help="comma-separated --parallel values")
    parser.add_argument("--modes", default="text,audio", help="comma-separated modes")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    records = asyncio.run(main_async(args))
    print_records(records)
    write_json(args.json, records)


if __name__ == "__main__":
    main()
