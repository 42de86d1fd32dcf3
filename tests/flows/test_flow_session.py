"""Flows in a live session: handoffs by function and by tool result, their commit with the turn
(barge-in included), a call resumed on another session, and what each node's LLM is sent."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig
from agent_pod.conversation import Conversation
from agent_pod.flows.state import FlowState
from agent_pod.providers.scripted_llm import STORY
from tests.flows.flowspec import BILLING_PROMPT, receptionist_flow, scripted
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.test_tools import assert_paired
from tests.pipeline.toolserver import ToolServer, tool

# The receptionist's (pipeline) LLM. "then" is its answer once a handoff function returned, when the
# node it handed over to uses the same LLM (booking).
RULES: list[dict[str, Any]] = [
    {"match": "bill", "say": "Let me get billing.", "tool": "go_to_billing", "arguments": {}},
    {
        "match": "to book",
        "tool": "go_to_booking",
        "arguments": {},
        "then": "Booking desk, when and how many?",
    },
    {
        "match": "people",
        "say": "Booking it.",
        "tool": "book_table",
        "arguments": {"time": "19:00", "people": 2},
        "then": "Booked {result[confirmation]}.",
    },
]


def flow_config(
    url: str = "http://127.0.0.1:9/book", *, flow: dict[str, Any] | None = None, **overrides: Any
) -> AgentConfig:
    base = make_config(rules=RULES, tools=[tool("book_table", url), tool("refund", url)])
    return AgentConfig.model_validate({**base.dump(), "flow": flow or receptionist_flow(**overrides)})


def moves(conversation: Conversation) -> list[tuple[int, str, str, str]]:
    assert conversation.flow is not None
    return [(m.seq, m.from_node, m.to_node, m.turn_id) for m in conversation.flow.moves]


def final_texts(h: Harness) -> list[str]:
    return [e.text for e in h.of_type("agent_text") if e.final]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_without_a_flow_nothing_changes() -> None:
    async with Harness(make_config(rules=RULES)) as h:
        h.session.push_text("hello")
        await h.drain_agent()
        assert h.session.conversation.flow is None
        assert final_texts(h) == ["Hello! How can I help you today?"]


async def test_function_handoff_to_a_specialist_with_its_own_llm_prompt_and_no_history() -> None:
    before = sample("voicefleet_flow_transitions_total", from_node="reception", to_node="billing")
    handoffs = sample("voicefleet_flow_handoff_seconds_count")
    config = flow_config(billing={"context": "none"})
    async with Harness(config) as h:
        h.session.push_text("hi")
        await h.drain_agent()
        h.session.push_text("a question about my bill")
        await h.drain_agent()
        conv = h.session.conversation
        # The billing node answered in the same turn, from its own LLM, with its prompt and without the
        # receptionist's history (the scripted reply repeats the system prompt it was given).
        assert final_texts(h)[-1] == f"Let me get billing. Billing here. {BILLING_PROMPT} Explain the bill."
        assert moves(conv) == [(1, "reception", "billing", "turn-2")]
        assert conv.flow is not None and conv.flow.node == "billing"
        assert conv.flow.entry_turn == "turn-2" and conv.flow.entry_offset == 3
        assert [m.role for m in conv.messages] == [
            "user",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert conv.messages[4].content == '{"handed_over_to": "billing"}'
        assert_paired(conv.messages)
        # Committed with the turn's history: the snapshot that made the turn final has the move.
        assert h.snapshots[-1].flow == conv.flow
        assert h.snapshots[0].flow is not None and h.snapshots[0].flow.node == "reception"
        assert not h.of_type("tool")  # a transition function never reaches the tool runner
    assert sample("voicefleet_flow_transitions_total", from_node="reception", to_node="billing") == before + 1
    assert sample("voicefleet_flow_handoff_seconds_count") == handoffs + 1


async def test_resumed_call_continues_in_its_node_with_its_tools() -> None:
    billing_llm = scripted(
        [
            {"match": "reception", "tool": "back_to_reception", "arguments": {}},
            {"match": ".", "reply": "Billing here. {system_prompt}"},
        ]
    )
    config = flow_config(billing={"context": "none", "llm": billing_llm})
    async with Harness(config, session_id="call-1") as first:
        first.session.push_text("my bill please")
        await first.drain_agent()
        snapshot = first.snapshots[-1]
    assert snapshot.flow is not None and snapshot.flow.node == "billing"

    # Another pod: a new session from the snapshot (through its JSON, as Redis stores it).
    restored = Conversation.model_validate_json(snapshot.model_dump_json(by_alias=True))
    async with Harness(config, conversation=restored, session_id="call-1") as second:
        second.session.push_text("one more thing")
        await second.drain_agent()
        assert final_texts(second)[-1].startswith(f"Billing here. {BILLING_PROMPT}")
        # back_to_reception is offered only by the billing node: calling it moves the call back.
        second.session.push_text("take me back to reception")
        await second.drain_agent()
        conv = second.session.conversation
        assert moves(conv) == [(1, "reception", "billing", "turn-1"), (2, "billing", "reception", "turn-3")]
        assert conv.flow is not None and conv.flow.node == "reception"


@pytest.mark.parametrize(("people", "expected"), [(2, "billing"), (3, "booking")])
async def test_tool_result_condition_chooses_the_transition(people: int, expected: str) -> None:
    async with ToolServer() as server:
        rules = [{**RULES[2], "arguments": {"time": "19:00", "people": people}}]
        base = make_config(
            rules=[RULES[1], *rules],
            tools=[tool("book_table", server.url("/book")), tool("refund", server.url("/book"))],
        )
        flow = receptionist_flow(
            booking={"onExit": {"say": "Your table is booked."}},
            billing={"onEntry": {"say": "Now billing.", "respond": False}},
        )
        config = AgentConfig.model_validate({**base.dump(), "flow": flow})
        async with Harness(config) as h:
            h.session.push_text("I want to book")
            await h.drain_agent()
            assert final_texts(h) == ["Booking desk, when and how many?"]
            h.session.push_text(f"{people} people at seven")
            await h.drain_agent()
            conv = h.session.conversation
            assert conv.flow is not None and conv.flow.node == expected
            assert len(server.calls("/book")) == 1
            if expected == "billing":
                # Exit line, entry line, and nothing more: billing answers the next turn.
                assert final_texts(h)[-1] == "Booking it. Your table is booked. Now billing."
                assert moves(conv)[-1] == (2, "booking", "billing", "turn-2")
                h.session.push_text("how much is it")
                await h.drain_agent()
                assert final_texts(h)[-1].startswith("Billing here.")
            else:
                assert final_texts(h)[-1] == "Booking it. Booked BK-19:00."
                assert moves(conv) == [(1, "reception", "booking", "turn-1")]


async def test_barge_in_during_the_transition_tool_call_moves_nothing() -> None:
    async with ToolServer() as server:
        flow = receptionist_flow()
        flow["initialNode"] = "booking"
        config = flow_config(server.url("/hang"), flow=flow)
        async with Harness(config) as h:
            h.session.push_text("2 people at seven")
            await h.until(lambda: server.calls("/hang"), what="the booking call to be in flight")
            h.session.push_text("stop, never mind")  # typed barge-in while the call hangs
            await h.drain_agent()
            await h.until(lambda: not h.session.busy and len(final_texts(h)) == 2, what="both turns")
            conv = h.session.conversation
            assert [e.state for e in h.of_type("tool") if e.state != "started"] == ["cancelled"]
            assert conv.flow is not None and conv.flow.node == "booking" and conv.flow.moves == []
            assert h.snapshots[-1].flow == FlowState(node="booking")
            assert_paired(conv.messages)


async def test_barge_in_while_the_new_node_speaks_keeps_the_move_exactly_once() -> None:
    async with ToolServer() as server:
        story = scripted([{"match": ".", "reply": STORY}])
        flow = receptionist_flow(billing={"llm": story, "context": "none"})
        flow["initialNode"] = "booking"
        config = flow_config(server.url("/book"), flow=flow)
        async with Harness(config) as h:
            h.session.push_text("2 people at seven")
            await h.until(
                lambda: any("lighthouse" in e.text for e in h.of_type("agent_text")),
                what="the billing node to start speaking",
            )
            h.step()  # the caller hears the first frame of the turn
            h.session.push_text("wait")  # typed barge-in while billing speaks
            await h.until(lambda: h.of_type("interruption"), what="the interruption")
            await h.drain_agent()
            await h.until(lambda: not h.session.busy and len(final_texts(h)) == 2, what="both turns")
            conv = h.session.conversation
            assert moves(conv) == [(1, "booking", "billing", "turn-1")]
            assert conv.flow is not None and conv.flow.node == "billing"
            interrupted = [m for m in conv.messages if m.interrupted]
            assert len(interrupted) == 1 and interrupted[0].turn_id == "turn-1"
            # The next turn ("wait") was answered by billing, and moved nothing more.
            assert [m.turn_id for m in conv.messages if m.role == "user"] == ["turn-1", "turn-2"]
            assert h.snapshots[-1].flow == conv.flow
            assert_paired(conv.messages)
