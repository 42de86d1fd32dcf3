"""The flow of one live call: which node answers a turn, the handoffs made inside it, and their commit.

A turn starts in the committed node (the snapshot's). When a tool result or a transition function
chooses a transition, the node that takes over answers the rest of the turn (unless its onEntry says
not to), but the move is only a proposal until ``commit`` runs in the session's ``_finish_turn``,
together with the turn's history. ``commit`` recomputes the moves from the turn's final outcomes, so a
call cancelled by a barge-in moves nothing, and a call that completed moves exactly once (a move is
keyed by its turn and call id), however the turn ended.

A sensitive call the caller confirmed at the start of the turn (docs/tools.md) ran before the turn's first
round; ``begin`` evaluates it from the committed node like any tool call, so its handoff is proposed
before the turn's first round and committed with the turn the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..config import AgentConfig, FlowNode, FlowSpec, LLMStage, ToolSpec
from ..context.engine import budgeted
from ..context.summary import summarize
from ..conversation import ChatMessage, Conversation, ToolCall
from ..pipeline.tools import ToolOutcome
from ..pipeline.turn import AgentTurn, Round
from ..providers.base import LLM, ChatModel, LLMChunk, ProviderError
from ..providers.fallback import FallbackLLM, chain, stage_timeouts
from ..providers.registry import provider_class
from ..providers.shared import per_pod
from . import graph, metrics
from .state import MAX_LOGGED_MOVES, FlowMove, FlowState

log = logging.getLogger(__name__)


def node_llm(stage: LLMStage) -> FallbackLLM:
    """A node's own LLM, built once per pod."""

    def build() -> FallbackLLM:
        providers: list[LLM] = [provider_class("llm", c.provider)(c) for c in [stage, *stage.fallback]]
        return FallbackLLM(chain(providers, stage_timeouts(stage)))

    return per_pod("flow-node", stage, build)


@dataclass
class NodeStep:
    """What the next LLM rounds of a turn run with; ``done``: the turn ends (the new node waits)."""

    messages: list[ChatMessage]
    tools: list[ToolSpec]
    llm: ChatModel
    done: bool = False


@dataclass
class _Handoff:
    decided_at: float
    first_piece: int  # index in the turn's playback of the first piece spoken after the decision
    first_token_at: float | None = None
    observed: bool = False

    def observe(self, at: float) -> None:
        if not self.observed:
            self.observed = True
            metrics.FLOW_HANDOFF_SECONDS.observe(at - self.decided_at)


@dataclass
class _LiveTurn:
    start: str  # the committed node the turn began in
    base: int  # messages[:base] of the running LLM request are context; the rest is this turn's
    inflight: list[ChatMessage] = field(default_factory=list)  # this turn's messages of earlier nodes
    moves: int = 0
    proposed: FlowState | None = None  # the position the turn's last move proposes
    proposed_by: str = ""  # the call id of that move
    handoff: _Handoff | None = None
    confirmed: tuple[ToolCall, ToolOutcome] | None = None  # run on the caller's yes, before round 0


class NodeLLM:
    """A node's model as an LLM (for the summary), noting when a handed-over node's first chunk arrives."""

    def __init__(self, name: str, llm: ChatModel, handoff: _Handoff | None = None) -> None:
        self.name = name
        self._llm = llm
        self._handoff = handoff

    async def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        async for chunk in self._llm.stream(messages, tools):
            if self._handoff is not None and self._handoff.first_token_at is None:
                self._handoff.first_token_at = time.monotonic()
            yield chunk


class FlowRuntime:
    def __init__(
        self, flow: FlowSpec, config: AgentConfig, conversation: Conversation, llm: ChatModel
    ) -> None:
        self.flow = flow
        self._prompt = config.prompt_text
        self._budget = config.context
        self._tools = config.tools
        self._llm = llm
        self._conversation = conversation
        self._live: dict[str, _LiveTurn] = {}
        state = conversation.flow
        if state is None or flow.node(state.node) is None:
            if state is not None:  # a revision without that node: the call starts the flow over
                log.warning(
                    "session %s: flow node %r is gone; back to %r",
                    conversation.session_id,
                    state.node,
                    flow.initial_node,
                )
            conversation.flow = FlowState(
                node=flow.initial_node, seq=state.seq if state else 0, moves=state.moves if state else []
            )

    @classmethod
    def for_session(
        cls, config: AgentConfig, conversation: Conversation, llm: ChatModel
    ) -> FlowRuntime | None:
        return cls(config.flow, config, conversation, llm) if config.flow is not None else None

    @property
    def state(self) -> FlowState:
        assert self._conversation.flow is not None
        return self._conversation.flow

    def _node(self, name: str) -> FlowNode:
        node = self.flow.node(name)
        assert node is not None  # names are checked against the flow when the config is loaded
        return node

    async def begin(
        self,
        turn: AgentTurn,
        pieces: asyncio.Queue[tuple[str, int] | None],
        confirmed: tuple[ToolCall, ToolOutcome] | None = None,
    ) -> NodeStep:
        """The committed node answers the turn: its prompt, tools, LLM and history. When ``confirmed`` (the
        call the caller's yes ran, already in the history) chooses a transition, the handoff's lines open
        the turn's first round and the node that takes over answers (or the turn ends)."""
        state = self.state
        live = self._live[turn.turn_id] = _LiveTurn(start=state.node, base=0, confirmed=confirmed)
        history = list(self._conversation.messages)
        moves = graph.turn_moves(self.flow, live.start, [], {}, confirmed)
        if moves:
            turn.rounds.append(Round())
            return await self._hand_over(turn, live, moves, 0, pieces, history)
        step = await self._step(self._node(state.node), state, history)
        live.base = len(step.messages)
        return step

    def answers(self, turn: AgentTurn, call: ToolCall) -> bool:
        """A transition function of the node answering the turn is answered here, not by the tool
        runner; True when ``call`` was one (its outcome is set)."""
        live = self._live.get(turn.turn_id)
        if live is None:
            return False
        node = self._node(live.proposed.node if live.proposed else live.start)
        if not graph.is_function(node, call.name):
            return False
        result = graph.function_result(node, call.name)
        turn.outcomes[call.id] = ToolOutcome("succeeded", result, result_json=result)
        return True

    async def moved(
        self,
        turn: AgentTurn,
        index: int,
        pieces: asyncio.Queue[tuple[str, int] | None],
        messages: list[ChatMessage],
    ) -> NodeStep | None:
        """After round ``index``'s tool results: None when no transition was chosen; else the lines of
        the handoff are queued for speech and the node that takes over answers (or the turn ends)."""
        live = self._live.get(turn.turn_id)
        if live is None:
            return None
        moves = graph.turn_moves(self.flow, live.start, turn.rounds, turn.outcomes, live.confirmed)
        if len(moves) == live.moves:
            return None
        live.inflight += messages[live.base :]
        history = [*self._conversation.messages, *live.inflight]
        return await self._hand_over(turn, live, moves, index, pieces, history)

    async def _hand_over(
        self,
        turn: AgentTurn,
        live: _LiveTurn,
        moves: list[graph.Move],
        index: int,
        pieces: asyncio.Queue[tuple[str, int] | None],
        history: list[ChatMessage],
    ) -> NodeStep:
        """Propose the turn's newest move: the lines of the handoff are queued for speech as part of round
        ``index`` (the turn's last), and the node that takes over answers from ``history`` (or the turn
        ends)."""
        live.moves = len(moves)
        move = moves[-1]
        handoff = live.handoff = _Handoff(time.monotonic(), len(turn.playback.pieces) + pieces.qsize())
        old, new = self._node(move.source), self._node(move.target)
        rnd = turn.rounds[index]
        for line in (old.on_exit.say, new.on_entry.say):
            if line:
                rnd.text = f"{rnd.text} {line}".strip()
                pieces.put_nowait((line, index))
        proposed = FlowState(
            node=new.name,
            entry_turn=turn.turn_id,
            entry_offset=graph.entry_offset(history, turn.turn_id, move.call_id),
        )
        live.proposed, live.proposed_by = proposed, move.call_id
        if not new.on_entry.respond:
            return NodeStep([], [], self._llm, done=True)
        step = await self._step(new, proposed, history)
        live.base = len(step.messages)
        step.llm = NodeLLM(new.name, step.llm, handoff)
        return step

    def heard(self, turn: AgentTurn) -> None:
        """A frame of ``turn`` was played: the first one after a handoff ends its latency."""
        live = self._live.get(turn.turn_id)
        handoff = live.handoff if live is not None else None
        if handoff is None or handoff.observed:
            return
        spoken = turn.playback.pieces
        if len(spoken) > handoff.first_piece and spoken[handoff.first_piece].played_samples:
            handoff.observe(time.monotonic())

    def commit(self, turn: AgentTurn) -> None:
        """Record the turn's transitions (its calls have their final outcomes by now); the session
        snapshots them with the turn's history."""
        live = self._live.pop(turn.turn_id, None)
        if live is None:
            return
        if live.handoff is not None and live.handoff.first_token_at is not None:
            live.handoff.observe(live.handoff.first_token_at)  # the new node answered without speaking
        state = self.state
        done = {(m.turn_id, m.call_id) for m in state.moves}
        moves = [
            m
            for m in graph.turn_moves(self.flow, live.start, turn.rounds, turn.outcomes, live.confirmed)
            if (turn.turn_id, m.call_id) not in done
        ]
        if not moves:
            return
        for move in moves:
            state.seq += 1
            state.moves.append(
                FlowMove.model_validate(
                    {
                        "seq": state.seq,
                        "from": move.source,
                        "to": move.target,
                        "turn_id": turn.turn_id,
                        "call_id": move.call_id,
                    }
                )
            )
            metrics.FLOW_TRANSITIONS_TOTAL.labels(move.source, move.target).inc()
        del state.moves[:-MAX_LOGGED_MOVES]
        last = moves[-1]
        state.node = last.target
        state.entry_turn = turn.turn_id
        # The history of the turn is in the conversation by now (the session extends it first).
        state.entry_offset = graph.entry_offset(self._conversation.messages, turn.turn_id, last.call_id)
        proposed = live.proposed if live.proposed_by == last.call_id else None
        state.summary = proposed.summary if proposed is not None else None

    async def _step(self, node: FlowNode, state: FlowState, history: list[ChatMessage]) -> NodeStep:
        llm: ChatModel = node_llm(node.llm) if node.llm is not None else self._llm
        before, since = graph.split_history(history, state.entry_turn, state.entry_offset)
        if graph.needs_summary(node.context, before, state.summary):
            try:
                state.summary = await summarize(NodeLLM(node.name, llm), before)
            except ProviderError as exc:
                metrics.FLOW_SUMMARY_FAILURES_TOTAL.inc()
                log.warning(
                    "session %s: no summary for node %s: %s", self._conversation.session_id, node.name, exc
                )
        context = graph.node_context(node.context, history, before, since, state.summary)
        # The node sees the call's memory, under the agent's token budget; the summary of turns taken out
        # of the history belongs to the full history only.
        summary = self._conversation.summary if node.context == "full" else ""
        view = self._conversation.model_copy(update={"messages": context, "summary": summary})
        return NodeStep(
            messages=budgeted(graph.node_prompt(self._prompt, node), view, self._budget),
            tools=graph.node_tools(self._tools, node),
            llm=llm,
        )
