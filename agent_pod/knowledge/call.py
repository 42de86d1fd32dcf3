"""Retrieval in one call: the built-in ``search_knowledge`` tool and the automatic context block.

The session answers the tool itself (no HTTP tool endpoint), as it does ``transfer_call``; the context
block is searched with the caller's words before the turn's first LLM request. Both run within the
agent's budget and add the document ids they gave the LLM to the turn (its record lists them).
"""

from __future__ import annotations

import time
from typing import Literal

from ..config import HTTPEndpoint, KnowledgeSpec, ToolSpec
from ..conversation import ChatMessage, ToolCall
from ..pipeline.events import ToolEvent
from ..pipeline.tools import ToolOutcome, ToolRunner, error_content, parse_arguments
from ..pipeline.turn import AgentTurn
from .client import KnowledgeClient, Retrieval
from .passages import context_block, tool_result
from .retrieval_metrics import RETRIEVAL_EMPTY_TOTAL, RETRIEVAL_SECONDS
from .routing import route

TOOL_NAME = "search_knowledge"
# The spec needs an endpoint; this one is never requested (the session answers the tool itself).
BUILTIN_ENDPOINT = HTTPEndpoint(url="http://voicefleet.invalid/builtin/search_knowledge")
CONTEXT_MAX_CHARS = 4000  # the context block's bound: top-k passages of a usual chunk size fit


def tool_spec(spec: KnowledgeSpec) -> ToolSpec:
    return ToolSpec(
        name=TOOL_NAME,
        description="Search the knowledge base for facts to answer the caller (prices, policies, opening "
        "hours, products ...). Answer only from the passages it returns; each names its document.",
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": "What to look up, in a few words.",
                }
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        endpoint=BUILTIN_ENDPOINT,
        timeout_seconds=max(spec.budget_ms / 1000, 1.0),
        retries=0,
        max_argument_repairs=1,
    )


def ground(turn: AgentTurn, docs: list[str]) -> None:
    """The turn's answer may rest on these documents: its record lists them (each once, in order)."""
    for doc in docs:
        if doc not in turn.knowledge_docs:
            turn.knowledge_docs.append(doc)


def export_retrieval_series(spec: KnowledgeSpec | None) -> None:
    """The retrieval series of the modes ``spec`` uses, at 0: exported from the pod's start, so that a
    rate() counts its first (empty) retrieval too."""
    if spec is None:
        return
    for mode in {"tool": ["tool"], "context": ["context"], "both": ["tool", "context"]}[spec.mode]:
        RETRIEVAL_SECONDS.labels(mode=mode)
        RETRIEVAL_EMPTY_TOTAL.labels(mode=mode)


class CallKnowledge:
    """The session's retrieval: offered tool specs, its dispatch, and the context block."""

    def __init__(self, spec: KnowledgeSpec | None) -> None:
        self.spec = spec
        self.tools = [tool_spec(spec)] if spec is not None and spec.mode in ("tool", "both") else []
        self.context = spec is not None and spec.mode in ("context", "both")
        export_retrieval_series(spec)
        self._client = KnowledgeClient()

    def offers(self, name: str) -> bool:
        return bool(self.tools) and name == TOOL_NAME

    async def retrieve(
        self, query: str, metadata: dict[str, str], mode: Literal["tool", "context"]
    ) -> Retrieval:
        """The call's routed bases searched within the budget (measured and counted)."""
        spec = self.spec
        assert spec is not None
        routed = route(spec, metadata)
        started = time.monotonic()
        found = await self._client.search(
            routed.bases,
            query,
            partitions=routed.partitions,
            k=spec.top_k,
            min_score=spec.min_score,
            budget_seconds=spec.budget_ms / 1000,
        )
        RETRIEVAL_SECONDS.labels(mode=mode).observe(time.monotonic() - started)
        if not found.hits:
            RETRIEVAL_EMPTY_TOTAL.labels(mode=mode).inc()
        return found

    async def call(
        self, call: ToolCall, runner: ToolRunner, turn: AgentTurn, metadata: dict[str, str]
    ) -> ToolOutcome:
        """Answer one ``search_knowledge``; it ends in one terminal ToolEvent and audit record, as other
        tools do."""
        runner.emit(
            ToolEvent(
                call_id=call.id, name=call.name, state="started", arguments_json=call.arguments, attempt=1
            )
        )
        args, why = parse_arguments(self.tools[0], call.arguments)
        if args is None:
            content = error_content("invalid_arguments", why, hint="call it again with a query")
            return runner.finish(call, ToolOutcome("invalid_arguments", content, error=why), 1)
        found = await self.retrieve(args["query"], metadata, "tool")
        ground(turn, [h.doc_id for h in found.hits])
        result = tool_result(found.hits, found.missing)
        return runner.finish(call, ToolOutcome("succeeded", result, result_json=result), 1)

    async def add_context(
        self, messages: list[ChatMessage], turn: AgentTurn, metadata: dict[str, str]
    ) -> None:
        """Put the passages for the caller's words right before their message (context mode)."""
        if not self.context or not turn.user.text.strip():
            return
        assert self.spec is not None
        found = await self.retrieve(turn.user.text, metadata, "context")
        text, docs = context_block(found.hits, CONTEXT_MAX_CHARS)
        if not docs:
            return
        at = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), len(messages))
        messages.insert(at, ChatMessage(role="system", content=text))
        ground(turn, docs)

    async def aclose(self) -> None:
        await self._client.aclose()
