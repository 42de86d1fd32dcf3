"""Memory and context through the real pipeline: extraction and tool writes land in the snapshot without
delaying turns, memory and summaries reach the LLM (the OpenAI wire server records every request), a
long call stays within its token budget, and a resumed call keeps its memory and summary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig, LLMStage
from agent_pod.context.assembler import SUMMARY_HEADER
from agent_pod.context.blocks import MEMORY_HEADER, slot_values
from agent_pod.context.summary import SUMMARY_INSTRUCTIONS
from agent_pod.context.tokens import MESSAGE_OVERHEAD, text_tokens
from agent_pod.conversation import HISTORY_TRIMMED, Conversation
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import ToolServer, tool
from tests.wire.openai_server import DEFAULT_KEY, OpenAIServer, PromptRule, PromptScript

BOOKING = {
    "label": "booking",
    "description": "What the caller wants booked",
    "kind": "slots",
    "slots": ["day", "party", "confirmation"],
    "limitChars": 200,
}
PROFILE = {
    "label": "caller_profile",
    "description": "Who the caller is",
    "initial": "Name: Ada",
    "readOnly": True,
}
EXTRACT = {"match": "^Update the memory", "reply": '{"booking": {"day": "friday", "party": 4}}'}


def with_memory(
    config: AgentConfig, memory: dict[str, Any], context: dict[str, Any] | None = None
) -> AgentConfig:
    return AgentConfig.model_validate({**config.dump(), "memory": memory, "context": context or {}})


def finals(h: Harness) -> list[Any]:
    return [e for e in h.of_type("agent_text") if e.final]


def memory_of(conversation: Conversation, label: str) -> Any:
    block = next(b for b in conversation.memory if b.label == label)
    return slot_values(block) if block.kind == "slots" else block.value


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_extraction_fills_slots_off_the_call_path_and_the_snapshot_has_them():
    slow_extractor = {
        "provider": "scripted",
        "options": {"rules": json.dumps([EXTRACT]), "first_token_delay_ms": "3000"},
    }
    config = with_memory(
        make_config(), {"blocks": [PROFILE, BOOKING], "extraction": {"enabled": True, "llm": slow_extractor}}
    )
    async with Harness(config) as h:
        h.session.push_text("a table on friday for four please")
        await h.drain_agent()
        h.session.push_text("thank you")
        await h.drain_agent()
        await h.until(lambda: len(finals(h)) == 2, what="two answered turns")
        # both turns answered while the first extraction was still waiting on its (slow) LLM
        assert memory_of(h.session.conversation, "booking") == {}
        snapshot = await h.until(
            lambda: next((s for s in h.snapshots if memory_of(s, "booking")), None), within=30, what="memory"
        )
        assert memory_of(snapshot, "booking") == {"day": "friday", "party": 4}
        assert memory_of(snapshot, "caller_profile") == "Name: Ada"
        lags = h.session._context.write_lags
        assert lags and lags[0] >= 3.0  # turn end -> block written and snapshotted, through the slow LLM


async def test_a_failing_extractor_logs_and_counts_and_the_call_goes_on():
    broken = {"provider": "scripted", "options": {"fail": "true"}}
    config = with_memory(make_config(), {"blocks": [BOOKING], "extraction": {"enabled": True, "llm": broken}})
    failed = counter("voicefleet_memory_extractions_total", outcome="failed")
    async with Harness(config) as h:
        h.session.push_text("friday for four")
        await h.drain_agent()
        await h.until(lambda: counter("voicefleet_memory_extractions_total", outcome="failed") > failed)
        h.session.push_text("hello")
        await h.drain_agent()
        await h.until(lambda: len(finals(h)) == 2)
        assert finals(h)[1].text == "Hello! How can I help you today?"
        assert memory_of(h.session.conversation, "booking") == {} and not h.of_type("error")


async def test_a_hung_extractor_times_out_and_the_next_extraction_runs():
    hung = {
        "provider": "scripted",
        "timeoutSeconds": 0.5,
        "options": {"rules": json.dumps([EXTRACT]), "first_token_delay_ms": "600000"},
    }
    config = with_memory(make_config(), {"blocks": [BOOKING], "extraction": {"enabled": True, "llm": hung}})
    failed = counter("voicefleet_memory_extractions_total", outcome="failed")
    async with Harness(config) as h:
        h.session.push_text("friday for four")
        await h.drain_agent()
        await h.until(lambda: counter("voicefleet_memory_extractions_total", outcome="failed") >= failed + 1)
        h.session.push_text("and a high chair")
        await h.drain_agent()
        # the worker was not stuck: the second turn's extraction ran (and timed out) too
        await h.until(lambda: counter("voicefleet_memory_extractions_total", outcome="failed") >= failed + 2)


async def test_a_tool_result_is_mapped_into_a_slot_in_the_turns_own_snapshot():
    rule = {
        "match": "book",
        "say": "Booking.",
        "tool": "book_table",
        "arguments": {"time": "19:00", "people": 2},
        "then": "Booked {result[confirmation]}.",
    }
    async with ToolServer() as server:
        base = make_config(rules=[rule], tools=[tool("book_table", server.url("/book"))])
        writes = [
            {"tool": "book_table", "block": "booking", "slot": "confirmation", "field": "confirmation"},
            {"tool": "book_table", "block": "booking", "slot": "party", "field": "people"},
        ]
        config = with_memory(base, {"blocks": [BOOKING], "toolWrites": writes})
        async with Harness(config) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            await h.until(lambda: finals(h) and h.snapshots, what="the turn's snapshot")
            assert memory_of(h.snapshots[0], "booking") == {"confirmation": "BK-19:00", "party": 2}


async def test_with_tight_storage_caps_turns_are_summarised_before_they_would_be_trimmed():
    config = make_config()
    config = AgentConfig.model_validate(
        {**config.dump(), "session": {"limits": {"maxHistoryTurns": 4}}, "context": {"keepLastTurns": 6}}
    )
    async with Harness(config) as h:
        for n in range(1, 9):
            h.session.push_text(f"message {n}")
            await h.drain_agent()
            await h.until(lambda n=n: len(finals(h)) == n, what=f"turn {n}")
            await h.session._context.wait_idle()
        convo = h.session.conversation
    assert not any(m.content == HISTORY_TRIMMED for m in convo.messages)  # nothing dropped unread
    assert "message 1" in convo.summary and convo.summary_through == 6  # the scripted LLM echoes
    assert [m.content for m in convo.messages if m.role == "user"] == ["message 7", "message 8"]


def is_summary(messages: list[dict[str, Any]]) -> bool:
    return messages[0]["content"].startswith(SUMMARY_INSTRUCTIONS[:30])


def estimate(messages: list[dict[str, Any]]) -> int:
    return sum(MESSAGE_OVERHEAD + text_tokens(m.get("content") or "") for m in messages)


async def test_a_long_call_stays_in_budget_with_a_summary_and_a_resume_keeps_memory_and_summary(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    openai_server.script_prompt(
        PromptScript(
            marker=SUMMARY_INSTRUCTIONS[:30],
            rules=[PromptRule(match=".", reply="Ada plans a trip to Lisbon.")],
        )
    )
    config = make_config()
    config.pipeline.llm = LLMStage.model_validate(
        {"provider": "openai", "model": "gpt-local", "baseUrl": openai_server.base_url}
    )
    budget = {"maxTokens": 700, "targetTokens": 450, "keepLastTurns": 2}
    config = with_memory(config, {"blocks": [PROFILE]}, budget)
    async with Harness(config) as h:
        for n in range(1, 13):
            h.session.push_text(f"turn {n}: " + "I would like to talk about my trip to Lisbon in May. " * 3)
            await h.drain_agent()
            await h.until(lambda n=n: len(finals(h)) == n, what=f"turn {n}")
        await h.until(lambda: any(s.summary for s in h.snapshots), within=30, what="a summarised snapshot")
    requests = openai_server.chat_requests()
    turns = [r for r in requests if not is_summary(r)]
    assert len(turns) == 12 and any(is_summary(r) for r in requests)
    assert all(estimate(r) <= 700 for r in turns), [estimate(r) for r in turns]
    assert all(r[0]["content"] == config.prompt_text for r in turns)  # pinned, every time
    assert all(MEMORY_HEADER in r[1]["content"] and "Name: Ada" in r[1]["content"] for r in turns)
    late = turns[-1]
    assert any(m["content"] == f"{SUMMARY_HEADER}\nAda plans a trip to Lisbon." for m in late)
    assert late[-1]["content"].startswith("turn 12:")
    # the history kept verbatim shrank: summarised turns left it
    snapshot = next(s for s in reversed(h.snapshots) if s.summary)
    assert snapshot.summary_through >= 1 and len([m for m in snapshot.messages if m.role == "user"]) < 12

    # resumed (another AgentSession, as on another pod): memory and summary come back with the snapshot
    resumed = snapshot.model_copy(deep=True)
    before = len(openai_server.chat_requests())
    async with Harness(config, conversation=resumed) as again:
        again.session.push_text("where were we")
        await again.drain_agent()
        await again.until(lambda: finals(again), what="the resumed turn")
    first = openai_server.chat_requests()[before]
    assert any(m["content"] == f"{SUMMARY_HEADER}\nAda plans a trip to Lisbon." for m in first)
    assert "Name: Ada" in first[1]["content"] and first[-1]["content"] == "where were we"
