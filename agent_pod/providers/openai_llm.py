"""OpenAI chat completions (or any OpenAI-compatible server) as the pipeline's LLM.

Text deltas are passed on as they arrive; tool calls stream as fragments keyed by
index (id and name first, arguments in pieces), so they are assembled here and
handed over whole once the model has finished. Cancelling the iterator (barge-in)
closes the HTTP stream, so the server stops generating.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from openai import omit
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
    ChatCompletionToolMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from ..config import LLMProvider, ToolSpec
from ..conversation import ChatMessage, ToolCall
from .base import LLMChunk, ProviderError
from .openai_common import SDK_ERRORS, make_client, provider_error, require

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"


def to_api_messages(messages: list[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """Our history in the chat completions format (tool calls and their results paired by id)."""
    out: list[ChatCompletionMessageParam] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": m.content})
        elif m.role == "user":
            out.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            assistant: ChatCompletionAssistantMessageParam = {"role": "assistant"}
            if m.content or not m.tool_calls:
                assistant["content"] = m.content
            if m.tool_calls:
                assistant["tool_calls"] = [_api_tool_call(c) for c in m.tool_calls]
            out.append(assistant)
        else:
            if not m.tool_call_id:
                raise ProviderError("openai chat: a tool message without tool_call_id cannot be sent")
            tool: ChatCompletionToolMessageParam = {
                "role": "tool",
                "tool_call_id": m.tool_call_id,
                "content": m.content,
            }
            out.append(tool)
    return out


def _api_tool_call(call: ToolCall) -> ChatCompletionMessageFunctionToolCallParam:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def to_api_tools(tools: list[ToolSpec]) -> list[ChatCompletionFunctionToolParam]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Collects streamed tool-call fragments by index into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, deltas: Iterable[ChoiceDeltaToolCall]) -> None:
        for d in deltas:
            call = self._calls.setdefault(d.index, _PartialCall())
            if d.id:
                call.id = d.id
            if d.function is not None:
                if d.function.name:
                    call.name += d.function.name
                if d.function.arguments:
                    call.arguments.append(d.function.arguments)

    def complete(self) -> list[ToolCall]:
        """The calls in index order; clears the assembler."""
        calls = []
        for index in sorted(self._calls):
            c = self._calls[index]
            if not c.name:
                raise ProviderError(f"openai chat: tool call #{index} streamed without a function name")
            calls.append(
                ToolCall(
                    # Some OpenAI-compatible servers omit ids; the pipeline needs one to pair the result.
                    id=c.id or f"call_{uuid.uuid4().hex[:16]}",
                    name=c.name,
                    arguments="".join(c.arguments) or "{}",
                )
            )
        self._calls.clear()
        return calls


class OpenAILLM:
    """Streams answers from chat.completions with the stage's tools."""

    def __init__(self, choice: LLMProvider) -> None:
        self.name = "openai"
        self._choice = choice
        self._model = choice.model or DEFAULT_MODEL
        self._client = make_client(choice, "llm")

    async def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        client = require(self._client, "chat")
        api_messages = to_api_messages(messages)
        try:
            stream = await client.chat.completions.create(
                model=self._model,
                messages=api_messages,
                tools=to_api_tools(tools) if tools else omit,
                temperature=self._choice.temperature,
                max_tokens=self._choice.max_tokens,
                stream=True,
            )
        except SDK_ERRORS as exc:
            raise provider_error("chat", exc) from None
        assembler = ToolCallAssembler()
        finished = False
        try:
            async for chunk in stream:
                if not chunk.choices:  # the usage chunk after the finish
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    yield LLMChunk(text=choice.delta.content)
                if choice.delta.tool_calls:
                    assembler.add(choice.delta.tool_calls)
                if choice.finish_reason is not None:
                    finished = True
                    if choice.finish_reason == "length":
                        log.info("openai chat: answer cut at max_tokens=%d", self._choice.max_tokens)
                    for call in assembler.complete():
                        yield LLMChunk(tool_call=call)
        except SDK_ERRORS as exc:
            raise provider_error("chat stream", exc) from None
        finally:
            # Runs on barge-in too (aclose or task cancellation): drop the HTTP stream at once.
            await stream.close()
        if not finished:
            raise ProviderError("openai chat stream: ended before the model finished")
