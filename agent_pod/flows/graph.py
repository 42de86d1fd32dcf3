"""The flow's decisions, as pure functions: which node answers, with which prompt, tools and history,
and which transitions a turn made. The live session (runtime.py) and the operator both call these."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ContextPolicy, FlowNode, FlowSpec, FlowTransition, FlowWhen, HTTPEndpoint, ToolSpec
from ..conversation import ChatMessage, ToolCall
from ..pipeline.tools import ToolOutcome
from ..pipeline.turn import Round

# Transition functions are offered to the LLM like tools but never sent anywhere: the flow answers them.
FUNCTION_ENDPOINT = HTTPEndpoint(url="http://flow.voicefleet.invalid/")
SUMMARY_HEADER = "Summary of the call before you took it over:"


def unreachable_nodes(flow: FlowSpec) -> list[str]:
    """Nodes no path of transitions leads to from the initial node, in spec order."""
    seen = {flow.initial_node}
    todo = [flow.initial_node]
    while todo:
        node = flow.node(todo.pop())
        for t in node.transitions if node else []:
            if t.to not in seen:
                seen.add(t.to)
                todo.append(t.to)
    return [n.name for n in flow.nodes if n.name not in seen]


def node_prompt(default_prompt: str, node: FlowNode) -> str:
    """The system prompt of a node: its role prompt (or the agent's), then its task."""
    role = node.role_prompt if node.role_prompt is not None else default_prompt
    return f"{role}\n\n{node.task_prompt}" if node.task_prompt else role


def node_tools(tools: Sequence[ToolSpec], node: FlowNode) -> list[ToolSpec]:
    """What the node offers the LLM: its tools from spec.tools, then its transition functions."""
    offered = [t for t in tools if t.name in node.tools]
    for t in node.transitions:
        if t.function is not None:
            offered.append(
                ToolSpec(
                    name=t.function,
                    description=t.description or f"Hand the conversation over to {t.to}.",
                    endpoint=FUNCTION_ENDPOINT,
                )
            )
    return offered


def is_function(node: FlowNode, name: str) -> bool:
    return any(t.function == name for t in node.transitions)


def function_result(node: FlowNode, name: str) -> str:
    """The tool message a transition function call gets (the LLM sees where the call went)."""
    target = next(t.to for t in node.transitions if t.function == name)
    return json.dumps({"handed_over_to": target})


def _lookup(result: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def result_matches(when: FlowWhen, result_json: str) -> bool:
    """The result's field at ``when.field`` equals ``when.equals`` (scalars compared as their JSON text,
    strings as they are)."""
    try:
        value = _lookup(json.loads(result_json), when.field)
    except ValueError:
        return False
    if value is None or isinstance(value, dict | list):
        return False
    text = value if isinstance(value, str) else json.dumps(value)
    return text == when.equals


def choose(node: FlowNode, call: ToolCall, outcome: ToolOutcome | None) -> FlowTransition | None:
    """The transition a finished call takes out of ``node``: the first that matches, if any. A call
    without a succeeded outcome (cancelled by a barge-in, failed, refused) takes none."""
    if outcome is None or outcome.state != "succeeded":
        return None
    for t in node.transitions:
        if t.function == call.name:
            return t
        if t.on_tool == call.name and (t.when is None or result_matches(t.when, outcome.result_json)):
            return t
    return None


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    call_id: str
    round: int  # index of the turn's round whose tool results chose it; -1: a confirmed call


def turn_moves(
    flow: FlowSpec,
    start: str,
    rounds: Sequence[Round],
    outcomes: Mapping[str, ToolOutcome],
    confirmed: tuple[ToolCall, ToolOutcome] | None = None,
) -> list[Move]:
    """The transitions a turn made, in order, from what its calls returned (at most one per round:
    the node that takes over answers the rounds after it). ``confirmed``: the call the caller's yes ran
    before the turn's first round; it comes first (its move has round -1)."""
    moves: list[Move] = []
    current = start
    if confirmed is not None and (node := flow.node(current)) is not None:
        call, outcome = confirmed
        t = choose(node, call, outcome)
        if t is not None:
            moves.append(Move(current, t.to, call.id, -1))
            current = t.to
    for index, rnd in enumerate(rounds):
        node = flow.node(current)
        if node is None:
            break
        for call in rnd.tool_calls:
            t = choose(node, call, outcomes.get(call.id))
            if t is not None:
                moves.append(Move(current, t.to, call.id, index))
                current = t.to
                break
    return moves


def entry_offset(history: Sequence[ChatMessage], turn_id: str, call_id: str) -> int:
    """How many messages of turn ``turn_id`` (its user message first) came before the node that the call
    ``call_id`` handed over to: up to the results of the assistant message that made the call."""
    start = next(
        (
            i
            for i in range(len(history) - 1, -1, -1)
            if history[i].role == "user" and history[i].turn_id == turn_id
        ),
        None,
    )
    if start is None:
        return 0
    for i in range(start, len(history)):
        if any(c.id == call_id for c in history[i].tool_calls):
            return i - start + 1 + len(history[i].tool_calls)
    return len(history) - start


def split_history(
    history: Sequence[ChatMessage], entry_turn: str | None, entry_offset: int
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """(before, since): the history before the node took over, and from the entry turn's user message on
    (without what the previous node said and called in that turn). A node the call started in, or whose
    entry turn was trimmed away, has everything in ``since``."""
    if entry_turn is not None:
        for u in range(len(history) - 1, -1, -1):
            m = history[u]
            if m.role == "user" and m.turn_id == entry_turn:
                before = [*history[:u], *history[u + 1 : u + entry_offset]]
                return before, [history[u], *history[u + entry_offset :]]
    return [], list(history)


def needs_summary(policy: ContextPolicy, before: Sequence[ChatMessage], summary: str | None) -> bool:
    return policy == "summary" and bool(before) and summary is None


def node_context(
    policy: ContextPolicy,
    history: Sequence[ChatMessage],
    before: Sequence[ChatMessage],
    since: Sequence[ChatMessage],
    summary: str | None,
) -> list[ChatMessage]:
    """The history a node's LLM sees under its context policy. A summary that could not be made falls
    back to the full history (nothing is lost)."""
    if not before or policy == "full":
        return list(history)
    if policy == "none":
        return list(since)
    if summary:
        return [ChatMessage(role="system", content=f"{SUMMARY_HEADER}\n{summary}"), *since]
    return list(history)
