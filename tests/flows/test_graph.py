"""The flow's pure decisions: reachability, transition choice, the moves of a turn, context policies."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, FlowSpec
from agent_pod.conversation import ChatMessage, ToolCall
from agent_pod.flows import graph
from agent_pod.pipeline.tools import ToolOutcome, cancelled_outcome
from agent_pod.pipeline.turn import Round
from tests.flows.flowspec import receptionist_flow

TOOLS = [
    {"name": "book_table", "description": "Book.", "endpoint": {"url": "http://tools/book"}},
    {"name": "refund", "description": "Refund.", "endpoint": {"url": "http://tools/refund"}},
]


def flow(**overrides: object) -> FlowSpec:
    return FlowSpec.model_validate(receptionist_flow(**overrides))


def ok(result: dict[str, object]) -> ToolOutcome:
    text = json.dumps(result)
    return ToolOutcome("succeeded", text, result_json=text)


def test_unreachable_nodes_are_listed_in_spec_order() -> None:
    f = flow()
    assert graph.unreachable_nodes(f) == []
    cut = flow(reception={"transitions": []})
    assert graph.unreachable_nodes(cut) == ["booking", "billing"]
    via_booking_only = flow(reception={"transitions": [{"function": "go_to_booking", "to": "booking"}]})
    assert graph.unreachable_nodes(via_booking_only) == []


def test_node_prompt_and_tools() -> None:
    f = flow()
    reception, booking = f.node("reception"), f.node("booking")
    assert reception is not None and booking is not None
    assert graph.node_prompt("default", reception) == "You are the front desk of Chez Voice."
    assert graph.node_prompt("default", booking).startswith("default\n\nBook a table")
    config = AgentConfig.model_validate({"tools": TOOLS, "flow": receptionist_flow()})
    assert [t.name for t in graph.node_tools(config.tools, booking)] == ["book_table"]
    offered = graph.node_tools(config.tools, reception)
    assert [t.name for t in offered] == ["go_to_billing", "go_to_booking"]
    assert offered[0].description == "Questions about a bill."


@pytest.mark.parametrize(
    ("result", "field", "equals", "matches"),
    [
        ({"people": 2}, "people", "2", True),
        ({"people": 3}, "people", "2", False),
        ({"status": "confirmed"}, "status", "confirmed", True),
        ({"booking": {"ok": True}}, "booking.ok", "true", True),
        ({"booking": {"ok": True}}, "booking", "true", False),
        ({"other": 1}, "people", "2", False),
    ],
)
def test_result_conditions(result: dict[str, object], field: str, equals: str, matches: bool) -> None:
    when = FlowSpec.model_validate(receptionist_flow()).nodes[1].transitions[0].when
    assert when is not None
    cond = when.model_copy(update={"field": field, "equals": equals})
    assert graph.result_matches(cond, json.dumps(result)) is matches
    assert graph.result_matches(cond, "not json") is False


def test_turn_moves_need_a_succeeded_call_and_follow_the_new_node() -> None:
    f = flow()
    to_booking = ToolCall(id="c1", name="go_to_booking", arguments="{}")
    book = ToolCall(id="c2", name="book_table", arguments="{}")
    rounds = [Round(tool_calls=[to_booking]), Round(tool_calls=[book])]
    moves = graph.turn_moves(f, "reception", rounds, {"c1": ok({}), "c2": ok({"people": 2})})
    assert [(m.source, m.target, m.call_id, m.round) for m in moves] == [
        ("reception", "booking", "c1", 0),
        ("booking", "billing", "c2", 1),
    ]
    history = [
        ChatMessage(role="user", content="table", turn_id="turn-4"),
        ChatMessage(role="assistant", tool_calls=[to_booking], turn_id="turn-4"),
        ChatMessage(role="tool", tool_call_id="c1", turn_id="turn-4"),
        ChatMessage(role="assistant", content="For two?", tool_calls=[book], turn_id="turn-4"),
        ChatMessage(role="tool", tool_call_id="c2", turn_id="turn-4"),
        ChatMessage(role="assistant", content="Billing here.", turn_id="turn-4"),
    ]
    # Messages of the turn before each new node took over: the user message and the calls' rounds.
    assert [graph.entry_offset(history, "turn-4", m.call_id) for m in moves] == [3, 5]
    assert graph.entry_offset(history, "turn-9", "c1") == 0
    assert graph.turn_moves(f, "reception", rounds, {"c1": cancelled_outcome()}) == []
    unmatched = graph.turn_moves(f, "reception", rounds, {"c1": ok({}), "c2": ok({"people": 4})})
    assert [m.target for m in unmatched] == ["booking"]
    # book_table is not a way out of reception: nothing moves from there.
    assert graph.turn_moves(f, "reception", [Round(tool_calls=[book])], {"c2": ok({"people": 2})}) == []


def _history() -> list[ChatMessage]:
    return [
        ChatMessage(role="user", content="hi", turn_id="turn-1"),
        ChatMessage(role="assistant", content="Hello!", turn_id="turn-1"),
        ChatMessage(role="user", content="my bill", turn_id="turn-2"),
        ChatMessage(
            role="assistant",
            content="One moment.",
            tool_calls=[ToolCall(id="c1", name="go_to_billing", arguments="{}")],
            turn_id="turn-2",
        ),
        ChatMessage(role="tool", content="{}", tool_call_id="c1", turn_id="turn-2"),
        ChatMessage(role="assistant", content="Billing here.", turn_id="turn-2"),
    ]


def test_context_policies() -> None:
    history = _history()
    before, since = graph.split_history(history, "turn-2", 3)
    assert [m.content for m in before] == ["hi", "Hello!", "One moment.", "{}"]
    assert [m.content for m in since] == ["my bill", "Billing here."]
    assert graph.node_context("full", history, before, since, None) == history
    assert graph.node_context("none", history, before, since, None) == since
    summarized = graph.node_context("summary", history, before, since, "The caller said hi.")
    assert summarized[0].role == "system" and summarized[0].content.endswith("The caller said hi.")
    assert summarized[1:] == since
    assert graph.node_context("summary", history, before, since, None) == history  # no summary: keep all
    assert graph.needs_summary("summary", before, None) and not graph.needs_summary("summary", [], None)
    # A start node, or an entry turn trimmed away: everything is "since".
    assert graph.split_history(history, None, 0) == ([], history)
    assert graph.split_history(history, "turn-0", 3) == ([], history)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"initialNode": "lobby"}, "flow.initialNode: 'lobby' is not a node"),
        (
            {"nodes": [{"name": "a", "transitions": [{"function": "go", "to": "b"}]}], "initialNode": "a"},
            "flow.nodes[a].transitions: 'b' is not a node",
        ),
        (
            {"nodes": [{"name": "a", "tools": ["wire_money"]}], "initialNode": "a"},
            "'wire_money' is not in spec.tools",
        ),
        (
            {"nodes": [{"name": "a", "transitions": [{"onTool": "refund", "to": "a"}]}], "initialNode": "a"},
            "onTool 'refund': not a node tool",
        ),
    ],
)
def test_bad_flow_is_refused_naming_the_field(change: dict[str, object], words: str) -> None:
    spec = {**receptionist_flow(), **change}
    with pytest.raises(ValidationError) as err:
        AgentConfig.model_validate({"tools": TOOLS, "flow": spec})
    assert words in str(err.value)


def test_transition_needs_exactly_one_trigger() -> None:
    with pytest.raises(ValidationError, match="exactly one of onTool or function"):
        FlowSpec.model_validate({"initialNode": "a", "nodes": [{"name": "a", "transitions": [{"to": "a"}]}]})
    with pytest.raises(ValidationError, match="when needs onTool"):
        FlowSpec.model_validate(
            {
                "initialNode": "a",
                "nodes": [
                    {
                        "name": "a",
                        "transitions": [{"function": "f", "to": "a", "when": {"field": "x", "equals": "1"}}],
                    }
                ],
            }
        )


def test_a_confirmed_call_moves_before_the_turns_rounds() -> None:
    f = flow()
    book = ToolCall(id="p1-turn-5", name="book_table", arguments="{}")
    back = ToolCall(id="c3", name="back_to_reception", arguments="{}")
    rounds = [Round(tool_calls=[back])]
    moves = graph.turn_moves(f, "booking", rounds, {"c3": ok({})}, (book, ok({"people": 2})))
    # The confirmed call comes first (round -1); the turn's rounds go on from the node it chose.
    assert [(m.source, m.target, m.call_id, m.round) for m in moves] == [
        ("booking", "billing", "p1-turn-5", -1),
        ("billing", "reception", "c3", 0),
    ]
    # Cancelled (a barge-in), failed or unmatched: it moves nothing, and the rounds start in booking.
    for outcome in (cancelled_outcome(), ToolOutcome("failed", "{}"), ok({"people": 3})):
        assert graph.turn_moves(f, "booking", rounds, {"c3": ok({})}, (book, outcome)) == []
    # Only a tool of the node's transitions moves it: book_table is no way out of reception.
    assert graph.turn_moves(f, "reception", [], {}, (book, ok({"people": 2}))) == []
