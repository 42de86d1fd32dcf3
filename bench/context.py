"""Context assembly and memory writes, measured in-process.

- assembly: the context of every turn of 50 concurrent sessions with long histories (tool calls,
  memory blocks, a summary), built by the session's own ContextEngine; µs per assembly, p50/p99,
  and the tokens sent against the budget;
- memory write lag: calls through the real pipeline (synthetic STT/TTS, scripted LLM) with the
  extraction step on; turn end -> extracted slots written and in the call's snapshot, p50/p99, with
  an instant extractor and one that takes ``--extract-delay-ms`` to answer like a hosted LLM.

  python -m bench.context [--sessions 50] [--turns 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from agent_pod.config import AgentConfig
from agent_pod.context.engine import ContextEngine
from agent_pod.context.tokens import messages_tokens
from agent_pod.conversation import ChatMessage, Conversation, ToolCall
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from bench.report import percentile, print_table, write_json

MEMORY = {
    "blocks": [
        {"label": "caller_profile", "description": "Who the caller is", "initial": "Name: Ada. Plan: gold."},
        {"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day", "party", "time"]},
        {"label": "facts", "description": "Facts the caller gave", "limitChars": 1000, "initial": "x" * 600},
    ]
}
EXTRACT = {"match": "^Update the memory", "reply": '{"booking": {"day": "friday", "party": 4}}'}
SENTENCE = "I would like to move my booking to a later time on Friday if that is possible. "


def turn_messages(n: int) -> list[ChatMessage]:
    tid = f"turn-{n}"
    out = [ChatMessage(role="user", content=f"{n}: " + SENTENCE * 2, turn_id=tid)]
    if n % 4 == 0:
        call = ToolCall(id=f"c{n}", name="lookup_booking", arguments='{"reference": "BK-1234"}')
        out += [
            ChatMessage(role="assistant", content="Let me check.", tool_calls=[call], turn_id=tid),
            ChatMessage(
                role="tool", content='{"day": "friday", "time": "19:00", "party": 4}', tool_call_id=call.id
            ),
        ]
    out.append(ChatMessage(role="assistant", content="Of course. " + SENTENCE, turn_id=tid))
    return out


class NoLLM:
    def stream(self, messages: list[ChatMessage], tools: list[Any]) -> Any:
        raise AssertionError("assembly never calls the LLM")


async def assembly_session(
    config: AgentConfig, turns: int, samples: list[float], cpu: list[float], tokens: list[int]
) -> None:
    convo = Conversation(session_id="bench", prompt_id="p", metadata={"caller_id": "+15550100"})
    convo.summary = "The caller booked a table for four on Friday and asked to move it. " * 3

    async def no_snapshot() -> None:
        return None

    engine = ContextEngine(config, lambda: convo, NoLLM(), no_snapshot, logging.getLogger("bench"))
    for n in range(1, turns + 1):
        turn = turn_messages(n)
        convo.messages.append(turn[0])
        started, cpu_started = time.perf_counter(), time.thread_time()
        messages = engine.messages()
        samples.append((time.perf_counter() - started) * 1e6)
        cpu.append((time.thread_time() - cpu_started) * 1e6)  # without the time other processes took
        tokens.append(messages_tokens(messages))
        convo.messages.extend(turn[1:])
        await asyncio.sleep(0)  # the sessions take turns, as on a pod


async def bench_assembly(sessions: int, turns: int) -> dict[str, Any]:
    config = AgentConfig.model_validate(
        {"memory": MEMORY, "context": {"maxTokens": 8000, "targetTokens": 6000, "keepLastTurns": 6}}
    )
    samples: list[float] = []
    cpu: list[float] = []
    tokens: list[int] = []
    await asyncio.gather(*(assembly_session(config, turns, samples, cpu, tokens) for _ in range(sessions)))
    return {
        "sessions": sessions,
        "turns_per_session": turns,
        "assemblies": len(samples),
        "p50_us": percentile(samples, 0.5),
        "p99_us": percentile(samples, 0.99),
        "cpu_p50_us": percentile(cpu, 0.5),
        "cpu_p99_us": percentile(cpu, 0.99),
        "max_tokens_sent": max(tokens),
        "budget_tokens": config.context.max_tokens,
    }


async def lag_call(config: AgentConfig, providers: Any, index: int, turns: int) -> list[float]:
    snapshots: list[Conversation] = []

    async def keep(conversation: Conversation) -> None:
        snapshots.append(conversation)

    session = AgentSession(
        session_id=f"lag-{index}",
        config=config,
        providers=providers,
        output_sample_rate=24000,
        on_snapshot=keep,
    )
    await session.start()
    events = session.events()
    for n in range(turns):
        session.push_text(f"a table on friday for four, turn {n}")
        while True:  # play the agent's audio out as a transport would, until the turn's final text
            while session.pull_audio() is not None:
                pass
            event = await asyncio.wait_for(anext(events), 30)
            if event.type == "agent_text" and getattr(event, "final", False):
                break
    await session._context.wait_idle()
    await session.close("client_ended")
    return list(session._context.write_lags)


async def bench_write_lag(calls: int, turns: int, delay_ms: int) -> dict[str, Any]:
    rules = json.dumps([EXTRACT])
    llm = {"provider": "scripted", "options": {"rules": rules}}
    extraction: dict[str, Any] = {"enabled": True}
    if delay_ms:  # a slower extractor of its own; the answers stay instant
        slow = {"rules": rules, "first_token_delay_ms": str(delay_ms)}
        extraction["llm"] = {"provider": "scripted", "options": slow}
    config = AgentConfig.model_validate(
        {
            "pipeline": {
                "vad": {"provider": "energy"},
                "stt": {"provider": "synthetic"},
                "llm": llm,
                "tts": {"provider": "synthetic"},
                "compliance": {"audit": False},
            },
            "memory": {"blocks": MEMORY["blocks"][:2], "extraction": extraction},
        }
    )
    providers = build_providers(config.pipeline)
    lags = [
        lag
        for call in await asyncio.gather(*(lag_call(config, providers, i, turns) for i in range(calls)))
        for lag in call
    ]
    return {
        "calls": calls,
        "turns_per_call": turns,
        "extractor_delay_ms": delay_ms,
        "writes": len(lags),
        "p50_ms": percentile(lags, 0.5) * 1000,
        "p99_ms": percentile(lags, 0.99) * 1000,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    assembly = await bench_assembly(args.sessions, args.turns)
    lags = [
        await bench_write_lag(args.sessions, args.lag_turns, delay) for delay in (0, args.extract_delay_ms)
    ]
    return {"assembly": assembly, "write_lag": lags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50, help="concurrent sessions (and calls)")
    parser.add_argument("--turns", type=int, default=200, help="turns of history per session")
    parser.add_argument("--lag-turns", type=int, default=5, help="turns per call for the write lag")
    parser.add_argument("--extract-delay-ms", type=int, default=300, help="the slow extractor's first token")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args))
    a = results["assembly"]
    columns = ["sessions", "turns_per_session", "assemblies", "p50_us", "p99_us", "cpu_p50_us", "cpu_p99_us"]
    print_table(
        ["sessions", "turns each", "assemblies", "p50 µs", "p99 µs", "CPU p50 µs", "CPU p99 µs"],
        [[a[c] for c in columns]],
    )
    print(f"largest context sent: {a['max_tokens_sent']} of {a['budget_tokens']} estimated tokens")
    print()
    print_table(
        ["calls", "turns each", "extractor delay ms", "writes", "lag p50 ms", "lag p99 ms"],
        [
            [r["calls"], r["turns_per_call"], r["extractor_delay_ms"], r["writes"], r["p50_ms"], r["p99_ms"]]
            for r in results["write_lag"]
        ],
    )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
