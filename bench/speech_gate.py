"""Latency the speech gate adds to a turn: hold mode and the supervisor, through the real pipeline.

Sessions run in process with the main LLM and the supervisor LLM behind the
real openai SDK, each against its own local OpenAI wire server
(tests/wire/openai_server.py); the main server streams 4-character chunks
``--chunk-ms`` apart, like a model producing tokens. Tools run on the local
HTTP tool server; TTS is synthetic (zero latency), so the numbers are what the
gate itself adds. Per turn: the caller's text in -> the first agent frame
ready for playout.

Scenarios: a plain answer with no tools offered (the baseline); the same
answer with tools offered, in stream and in hold mode (hold waits for the end
of the model's stream); a tool call with a preamble in stream and hold mode;
and the supervisor (budget ``--budget-ms``) answering in ``--supervisor-ms``,
and answering too late (every check hits the budget, onTimeout allow).

    python -m bench.speech_gate [--turns 20] [--chunk-ms 10] [--supervisor-ms 40] [--budget-ms 300]
                                [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from agent_pod.config import AgentConfig
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from bench.report import percentile, print_records, write_json
from tests.pipeline.toolserver import ToolServer
from tests.wire.openai_server import OpenAIServer, PromptRule, PromptScript

AGENT = "BENCH-AGENT"
SUPERVISOR = "BENCH-SUPERVISOR"
ANSWER = "It is sunny and warm today in the city. Tomorrow brings light rain, so take an umbrella."
PREAMBLE = "Let me check that for you."
OUT_RATE = 24000


@dataclass
class Scenario:
    name: str
    ask: str
    tools: bool
    mode: str = "hold"
    supervisor: str = ""  # "", "on time" or "late" (past its budget)


SCENARIOS = [
    Scenario("answer, no tools offered (baseline)", "weather", tools=False),
    Scenario("answer, tools offered, stream", "weather", tools=True, mode="stream"),
    Scenario("answer, tools offered, hold", "weather", tools=True, mode="hold"),
    Scenario("tool call + preamble, stream", "book", tools=True, mode="stream"),
    Scenario("tool call + preamble, hold", "book", tools=True, mode="hold"),
    Scenario("answer + supervisor", "weather", tools=False, supervisor="on time"),
    Scenario("answer + supervisor past its budget", "weather", tools=False, supervisor="late"),
]


def agent_config(
    scenario: Scenario, main: OpenAIServer, guard: OpenAIServer, tool_url: str, budget_ms: int
) -> AgentConfig:
    llm = {"provider": "openai", "baseUrl": main.base_url, "model": "bench", "timeoutSeconds": 30}
    pipeline: dict[str, Any] = {
        "vad": {"provider": "energy"},
        "stt": {"provider": "synthetic"},
        "llm": llm,
        "tts": {"provider": "synthetic", "options": {"ms_per_char": "1"}},
        "compliance": {"audit": False},
        "toolSpeech": {"mode": scenario.mode},
    }
    if scenario.supervisor:
        pipeline["supervisor"] = {
            "llm": {**llm, "baseUrl": guard.base_url},
            "prompt": f"{SUPERVISOR}: veto financial advice.",
            "budgetMs": budget_ms,
            "onTimeout": "allow",
        }
    tools = [
        {
            "name": "check_table",
            "description": "Check a table.",
            "endpoint": {"url": tool_url},
        }
    ]
    return AgentConfig.model_validate(
        {
            "pipeline": pipeline,
            "promptText": f"{AGENT}: you book tables.",
            "tools": tools if scenario.tools else [],
        }
    )


class Caller:
    """One session of a scenario, driven turn by turn."""

    def __init__(self, scenario: Scenario, config: AgentConfig) -> None:
        self.scenario = scenario
        self.session = AgentSession(
            session_id=f"bench-{len(scenario.name)}-{scenario.ask}",
            config=config,
            providers=build_providers(config.pipeline),
            output_sample_rate=OUT_RATE,
        )
        self.ready = asyncio.Event()
        self.session.first_frame_ready = self.ready.set
        self.latencies: list[float] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.session.start()
        self._reader = asyncio.create_task(_discard(self.session))

    async def turn(self, n: int) -> None:
        """One turn, played out as fast as it is synthesized; turn 0 (connection warm-up) is not counted."""
        self.ready.clear()
        started = time.monotonic()
        self.session.push_text(f"{self.scenario.ask} please, turn {n}")
        await asyncio.wait_for(self.ready.wait(), 30)
        if n:
            self.latencies.append((time.monotonic() - started) * 1000)
        while self.session.busy:
            if self.session.pull_audio() is None:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self.session.close("client_ended")
        if self._reader is not None:
            await self._reader

    def row(self) -> dict[str, Any]:
        checks = [c for r in self.session.turn_records[1:] for c in r.supervisor]
        return {
            "scenario": self.scenario.name,
            "turns": len(self.latencies),
            "first_audio_p50_ms": percentile(self.latencies, 0.5),
            "first_audio_p99_ms": percentile(self.latencies, 0.99),
            "checks": len(checks),
            "budget_hits": sum(c.source == "timeout" for c in checks),
        }


async def _discard(session: AgentSession) -> None:
    async for _ in session.events():
        pass


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    main, guard = OpenAIServer(), OpenAIServer()
    await main.start()
    await guard.start()
    os.environ["OPENAI_API_KEY"] = main.api_key  # both local servers take the same test key
    main.faults.chunk_interval = args.chunk_ms / 1000
    main.script_prompt(
        PromptScript(
            marker=AGENT,
            rules=[
                PromptRule(match="weather", reply=ANSWER),
                PromptRule(match="book", reply=PREAMBLE, tool="check_table", then="Your table is free."),
            ],
        )
    )
    guard.script_prompt(
        PromptScript(marker=SUPERVISOR, rules=[PromptRule(match=".", reply='{"verdict":"allow"}')])
    )
    callers: list[Caller] = []
    try:
        async with ToolServer() as tools:
            for scenario in SCENARIOS:
                config = agent_config(scenario, main, guard, tools.url("/book"), args.budget_ms)
                callers.append(Caller(scenario, config))
                await callers[-1].start()
            # Round robin, one turn of each scenario at a time: the machine's load drifts, and every
            # scenario then sees the same drift.
            for n in range(args.turns + 1):
                for caller in callers:
                    late = caller.scenario.supervisor == "late"
                    guard.faults.first_byte_delay = (
                        args.budget_ms + 200 if late else args.supervisor_ms
                    ) / 1000
                    await caller.turn(n)
    finally:
        for caller in callers:
            await caller.close()
        await main.stop()
        await guard.stop()
    rows = [caller.row() for caller in callers]
    baseline = rows[0]["first_audio_p50_ms"]
    for row in rows:
        row["added_p50_ms"] = row["first_audio_p50_ms"] - baseline
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20, help="measured turns per scenario")
    parser.add_argument("--chunk-ms", type=float, default=10.0, help="main LLM: pause between 4-char chunks")
    parser.add_argument("--supervisor-ms", type=float, default=40.0, help="supervisor LLM: time to answer")
    parser.add_argument("--budget-ms", type=int, default=300, help="supervisor budgetMs")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    print(
        f"Speech gate: caller text in -> first agent frame, {args.turns} turns per scenario; main LLM "
        f"{args.chunk_ms:.0f} ms per 4-char chunk, supervisor {args.supervisor_ms:.0f} ms, "
        f"budget {args.budget_ms} ms"
    )
    print_records(rows)
    write_json(args.json, {"benchmark": "speech_gate", "args": vars(args), "scenarios": rows})


if __name__ == "__main__":
    main()
