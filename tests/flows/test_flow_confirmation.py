"""A transition on a sensitive tool (``confirm: true``): the caller's yes runs the call at the start of
their next turn, outside the turn's LLM rounds, and its outcome moves the flow like a tool call of the
turn: once, committed with the turn's history, kept in the snapshot. Through the real pipeline, with
scripted LLMs and the real HTTP tool server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent_pod.config import AgentConfig
from agent_pod.conversation import Conversation
from agent_pod.flows.state import FlowState
from agent_pod.providers.scripted_llm import STORY
from tests.flows.flowspec import BILLING_PROMPT, receptionist_flow, scripted
from tests.flows.test_flow_session import final_texts, moves, sample
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.test_tools import assert_paired, tool_states
from tests.pipeline.toolserver import ToolServer, tool

BILLING_ANSWER = f"Billing here. {BILLING_PROMPT} Explain the bill."
HANDOFF_LINES = "Your table is booked. Now billing."


def rules(people: int = 2) -> list[dict[str, Any]]:
    """The pipeline LLM: reception hands over to booking, booking proposes book_table."""
    return [
        {
            "match": "to book",
            "tool": "go_to_booking",
            "arguments": {},
            "then": "Booking desk, when and how many?",
        },
        {
            "match": "table for",
            "say": "Let me see.",
            "tool": "book_table",
            "arguments": {"time": "19:00", "people": people},
            "then": "Shall I book that?",
        },
    ]


def config(
    url: str,
    *,
    people: int = 2,
    initial: str = "reception",
    booking: dict[str, Any] | None = None,
    billing: dict[str, Any] | None = None,
    timeout: float = 5,
) -> AgentConfig:
    """reception -go_to_booking-> booking -book_table (confirm, people=2)-> billing (context none: its
    scripted LLM answers the caller's words, not the booking result)."""
    base = make_config(
        rules=rules(people),
        tools=[
            tool("book_table", url, confirm=True, timeoutSeconds=timeout),
            tool("refund", url),
        ],
    )
    flow = receptionist_flow(
        booking={"onExit": {"say": "Your table is booked."}, **(booking or {})},
        billing={"onEntry": {"say": "Now billing."}, "context": "none", **(billing or {})},
    )
    flow["initialNode"] = initial
    return AgentConfig.model_validate({**base.dump(), "flow": flow})


async def turn(h: Harness, text: str) -> None:
    h.session.push_text(text)
    await h.drain_agent()


async def hear(h: Harness, frames: int) -> None:
    """The caller hears ``frames`` frames of agent audio."""
    deadline = asyncio.get_running_loop().time() + 20
    while frames and asyncio.get_running_loop().time() < deadline:
        if h.step() is not None:
            frames -= 1
        await asyncio.sleep(0.001)
    assert not frames, "the agent went silent"


def roles_of(conversation: Conversation, turn_id: str) -> list[str]:
    return [m.role for m in conversation.messages if m.turn_id == turn_id]


@pytest.mark.parametrize("respond", [True, False])
async def test_yes_runs_the_call_and_its_result_moves_the_flow_once(respond: bool) -> None:
    moved_before = sample("voicefleet_flow_transitions_total", from_node="booking", to_node="billing")
    async with ToolServer() as server:
        cfg = config(server.url("/book"), billing={"onEntry": {"say": "Now billing.", "respond": respond}})
        async with Harness(cfg) as h:
            await turn(h, "I want to book")
            assert final_texts(h) == ["Booking desk, when and how many?"]
            await turn(h, "a table for two at seven")
            assert server.calls("/book") == []  # proposed, not run
            pending = h.session.conversation.pending_confirmation
            assert pending is not None
            handoffs = sample("voicefleet_flow_handoff_seconds_count")

            await turn(h, "yes please")
            conv = h.session.conversation
            assert len(server.calls("/book")) == 1
            # The exit and entry lines, then (with respond) the billing node's answer, in that same turn.
            expected = f"{HANDOFF_LINES} {BILLING_ANSWER}" if respond else HANDOFF_LINES
            assert final_texts(h)[-1] == expected
            assert moves(conv) == [(1, "reception", "booking", "turn-1"), (2, "booking", "billing", "turn-3")]
            assert conv.flow is not None and conv.flow.node == "billing"
            assert conv.flow.moves[-1].call_id == f"{pending.call.id}-turn-3"
            # The node took over after the confirmed call's result (user, assistant call, tool).
            assert conv.flow.entry_turn == "turn-3" and conv.flow.entry_offset == 3
            assert roles_of(conv, "turn-3") == ["user", "assistant", "tool", "assistant"]
            assert conv.messages[-1].content == expected
            assert "BK-19:00" in conv.messages[-2].content
            assert_paired(conv.messages)
            # Committed with the turn's history: the snapshot that made the turn final holds the move.
            assert h.snapshots[-1].flow == conv.flow
            assert sample("voicefleet_flow_handoff_seconds_count") == handoffs + 1

            # The next turn is billing's, and the move is not made again.
            await turn(h, "and how much is it")
            assert final_texts(h)[-1] == BILLING_ANSWER
            assert len(moves(conv)) == 2 and conv.flow.node == "billing"
            assert len(server.calls("/book")) == 1
    moved = sample("voicefleet_flow_transitions_total", from_node="booking", to_node="billing")
    assert moved == moved_before + 1


@pytest.mark.parametrize(
    ("answer", "people", "path", "outcome"),
    [
        ("no, cancel that", 2, "/book", "declined"),
        ("hmm, what was the time again", 2, "/book", "awaiting_confirmation"),  # unclear: still pending
        ("yes", 3, "/book", "succeeded"),  # the result does not match the transition's when
        ("yes", 2, "/missing", "failed"),  # HTTP 404
    ],
)
async def test_no_move_without_a_matching_succeeded_call(
    answer: str, people: int, path: str, outcome: str
) -> None:
    async with (
        ToolServer() as server,
        Harness(config(server.url(path), people=people, initial="booking")) as h,
    ):
        await turn(h, "a table for two at seven")
        await turn(h, answer)
        conv = h.session.conversation
        assert h.session.tool_audit[-1].outcome == outcome
        assert len(server.calls("/book")) == (1 if outcome == "succeeded" else 0)
        assert conv.flow == FlowState(node="booking")
        assert h.snapshots[-1].flow == FlowState(node="booking")
        assert not final_texts(h)[-1].startswith("Your table is booked")
        assert (conv.pending_confirmation is not None) == answer.startswith("hmm")
        assert_paired(conv.messages)
        # The booking node goes on answering.
        await turn(h, "I want to book")
        assert conv.flow == FlowState(node="booking")


async def test_a_yes_in_a_resumed_session_moves_there_and_a_further_resume_goes_on_in_the_new_node() -> None:
    async with ToolServer() as server:
        cfg = config(server.url("/book"), initial="booking")
        async with Harness(cfg, session_id="call-1") as first:
            await turn(first, "a table for two at seven")
        proposed = Conversation.model_validate_json(first.snapshots[-1].model_dump_json(by_alias=True))
        assert proposed.pending_confirmation is not None

        # The caller's yes reaches a session resumed from the snapshot (as Redis stores it).
        async with Harness(cfg, conversation=proposed, session_id="call-1") as second:
            await turn(second, "yeah go ahead")
            assert final_texts(second)[-1] == f"{HANDOFF_LINES} {BILLING_ANSWER}"
        snapshot = second.snapshots[-1]
        assert snapshot.flow is not None and snapshot.flow.node == "billing"
        assert moves(snapshot) == [(1, "booking", "billing", "turn-2")]
        assert len(server.calls("/book")) == 1

        # A third session, from a copy of that snapshot, goes on in billing and moves nothing again.
        async with Harness(cfg, conversation=snapshot.model_copy(deep=True), session_id="call-1") as third:
            await turn(third, "one more thing")
            assert final_texts(third) == [BILLING_ANSWER]
            conv = third.session.conversation
            assert conv.flow == snapshot.flow
            assert [m.turn_id for m in conv.messages if m.role == "user"] == ["turn-1", "turn-2", "turn-3"]
        assert len(server.calls("/book")) == 1


async def test_barge_in_while_the_confirmed_call_runs_moves_nothing_and_the_flow_goes_on() -> None:
    async with ToolServer() as server:
        # No condition on the result: /hang answers {"late": true} once released.
        booking = {"transitions": [{"onTool": "book_table", "to": "billing"}]}
        cfg = config(server.url("/hang"), initial="booking", booking=booking, timeout=30)
        async with Harness(cfg) as h:
            await turn(h, "a table for two at seven")
            h.session.push_text("yes")
            await h.until(lambda: server.calls("/hang"), what="the confirmed call to go out")
            h.session.push_text("hello")  # typed barge-in while the call hangs
            await h.drain_agent()
            await h.until(lambda: not h.session.busy and len(final_texts(h)) == 3, what="the turns to end")
            conv = h.session.conversation
            assert conv.flow == FlowState(node="booking")
            assert h.snapshots[-1].flow == FlowState(node="booking")
            assert [r.outcome for r in h.session.tool_audit] == ["awaiting_confirmation", "cancelled"]
            assert ("cancelled", 1) in tool_states(h)  # every call ended exactly once
            assert conv.pending_confirmation is None
            assert roles_of(conv, "turn-2") == ["user", "assistant", "tool"]
            assert json.loads(conv.messages[2].content)["status"] == "confirmation_required"
            assert final_texts(h)[-1] == "Hello! How can I help you today?"  # booking answered it
            assert_paired(conv.messages)

            # Nothing is left half-moved: the next proposal and yes move the flow, once.
            await turn(h, "a table for two at seven")
            server.release.set()
            await turn(h, "yes")
            assert final_texts(h)[-1] == f"{HANDOFF_LINES} {BILLING_ANSWER}"
            assert moves(conv) == [(1, "booking", "billing", "turn-5")]
            assert conv.flow is not None and conv.flow.node == "billing"
            assert h.snapshots[-1].flow == conv.flow
            assert [r.outcome for r in h.session.tool_audit][2:] == ["awaiting_confirmation", "succeeded"]
            assert_paired(conv.messages)


async def test_barge_in_while_the_new_node_speaks_keeps_the_confirmed_move_exactly_once() -> None:
    async with ToolServer() as server:
        story = scripted([{"match": ".", "reply": STORY}])
        cfg = config(server.url("/book"), initial="booking", billing={"llm": story, "context": "none"})
        async with Harness(cfg) as h:
            await turn(h, "a table for two at seven")
            h.session.push_text("yes")
            await h.until(
                lambda: any("lighthouse" in e.text for e in h.of_type("agent_text")),
                what="the billing node to start speaking",
            )
            await hear(h, 150)  # the handoff's lines and the start of billing's answer
            h.session.push_text("wait")  # typed barge-in while billing speaks
            await h.until(lambda: h.of_type("interruption"), what="the interruption")
            await h.drain_agent()
            await h.until(lambda: not h.session.busy and len(final_texts(h)) == 3, what="the turns to end")
            conv = h.session.conversation
            assert moves(conv) == [(1, "booking", "billing", "turn-2")]
            assert conv.flow is not None and conv.flow.node == "billing"
            assert h.snapshots[-1].flow == conv.flow
            assert len(server.calls("/book")) == 1
            interrupted = [m for m in conv.messages if m.interrupted]
            assert len(interrupted) == 1 and interrupted[0].turn_id == "turn-2"
            assert interrupted[0].content.startswith(f"{HANDOFF_LINES} Once upon")  # as heard
            assert_paired(conv.messages)
