"""Flow handoff latency through the real pipeline (docs/flows.md).

Each call is an AgentSession (energy VAD, synthetic STT and TTS) with a receptionist node answered by
the scripted LLM. The caller says hello, then asks about a bill: the receptionist calls its
go_to_billing function and the billing node answers in the same turn. The latency is the session's
own voicefleet_flow_handoff_seconds (transition decided -> first audio frame the caller pulls after
it), read exactly per handoff from the histogram's sum (calls run one after the other).

Scenarios: billing on its own scripted LLM with context none and full; billing on an OpenAI-compatible
model (the local wire server, the real openai SDK) with context summary, where the handoff includes
writing the summary; and an entry line spoken before the specialist answers.

    python -m bench.handoff [--calls 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig
from bench.report import percentile, print_records, write_json
from tests.pipeline.harness import Harness, make_config
from tests.wire.openai_server import OpenAIServer

RULES = [{"match": "bill", "say": "One moment.", "tool": "go_to_billing", "arguments": {}}]
BILLING_REPLY = [{"match": ".", "reply": "Billing here. Your last invoice was forty two euros."}]


def config(billing: dict[str, Any]) -> AgentConfig:
    flow = {
        "initialNode": "reception",
        "nodes": [
            {"name": "reception", "transitions": [{"function": "go_to_billing", "to": "billing"}]},
            {"name": "billing", "rolePrompt": "You are the billing specialist.", **billing},
        ],
    }
    return AgentConfig.model_validate({**make_config(rules=RULES).dump(), "flow": flow})


def scripted_billing(context: str, **extra: Any) -> dict[str, Any]:
    llm = {"provider": "scripted", "options": {"rules": json.dumps(BILLING_REPLY)}}
    return {"llm": llm, "context": context, **extra}


def _sum_count() -> tuple[float, float]:
    name = "voicefleet_flow_handoff_seconds"
    return REGISTRY.get_sample_value(f"{name}_sum") or 0.0, REGISTRY.get_sample_value(f"{name}_count") or 0.0


async def one_call(cfg: AgentConfig, n: int) -> float:
    """One call's handoff latency in ms."""
    async with Harness(cfg, session_id=f"bench-{n}") as h:
        h.session.push_text("hello")
        await h.drain_agent()
        total, count = _sum_count()
        h.session.push_text("a question about my bill")
        await h.drain_agent()
        after_total, after_count = _sum_count()
        node = h.session.conversation.flow.node if h.session.conversation.flow else ""
    if after_count != count + 1 or node != "billing":
        raise RuntimeError(f"call {n}: no handoff measured (node {node!r})")
    return (after_total - total) * 1000


async def scenario(name: str, cfg: AgentConfig, calls: int) -> dict[str, Any]:
    await one_call(cfg, -1)  # warm-up: the first call imports the provider SDKs and opens connections
    started = time.perf_counter()
    ms = [await one_call(cfg, n) for n in range(calls)]
    return {
        "scenario": name,
        "calls": calls,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "wall_s": time.perf_counter() - started,
    }


async def run(calls: int) -> list[dict[str, Any]]:
    wire = OpenAIServer()
    await wire.start()
    os.environ.setdefault("OPENAI_API_KEY", wire.api_key)
    try:
        wire_billing = {"llm": {"provider": "openai", "baseUrl": wire.base_url}, "context": "summary"}
        return [
            await scenario("scripted, context none", config(scripted_billing("none")), calls),
            await scenario("scripted, context full", config(scripted_billing("full")), calls),
            await scenario(
                "scripted, entry line first",
                config(scripted_billing("none", onEntry={"say": "Let me bring up your account."})),
                calls,
            ),
            await scenario("wire server, context summary", config(wire_billing), calls),
        ]
    finally:
        await wire.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=40, help="handoffs per scenario")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    rows = asyncio.run(run(args.calls))
    print(
        "handoff latency: transition decided -> first audio frame after it (voicefleet_flow_handoff_seconds)"
    )
    print("one unmeasured warm-up call per scenario (imports, connections)\n")
    print_records(rows)
    write_json(args.json, {"benchmark": "handoff", "results": rows})


if __name__ == "__main__":
    main()
