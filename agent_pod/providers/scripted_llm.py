"""A deterministic, offline LLM that answers from rules.

``options["rules"]`` is a JSON list of rules tried in order against the last
user message (``match`` is a case-insensitive regular expression); the built-in
defaults follow them::

    {"match": "weather", "reply": "It is sunny today."}
    {"match": "book", "say": "Let me check.", "tool": "book_table",
     "arguments": {"time": "7pm"}, "repaired_arguments": {"time": "19:00"},
     "then": "You are booked: {result[confirmation]}."}

A tool rule calls ``tool`` with ``arguments`` (speaking ``say`` first). When the
tool answers with an ``invalid_arguments`` error, the call is repeated with
``repaired_arguments`` (or the same arguments when none are given, so repairs
run out). With the tool's result the answer is ``then`` formatted with
``result`` (the parsed JSON; ``{result}`` alone renders it as JSON) and ``tool``.
``{system_prompt}`` in a ``reply`` is replaced by the system prompt the model was
given (so a test agent can leak it, as a careless model would).
Defaults: greetings are greeted, "story"-like asks get a long multi-sentence
answer (for barge-in), anything else is echoed ("You said: ...").

Answers stream word by word without delay unless ``token_delay_ms`` /
``first_token_delay_ms`` are set; ``fail: "true"`` raises ProviderError.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import LLMProvider, ToolSpec
from ..conversation import ChatMessage, ToolCall
from .base import LLMChunk, ProviderError

STORY = (
    "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper named Tom. "
    "Every night he climbed the long spiral stairs to light the great lamp. "
    "Ships from far away lands trusted his light to guide them safely home. "
    "One stormy night the lamp went dark, and Tom heard a ship calling in the distance. "
    "He lit every candle he owned and carried them up to the top of the tower. "
    "The little flames flickered in the wind, but the sailors saw them and turned away from the rocks. "
    "In the morning the whole village came to thank him, and the captain gave him a brand new lamp. "
    "From that day on, the lighthouse never went dark again, "
    "and Tom told this story to every child who visited."
)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str
    reply: str = ""
    say: str = ""
    tool: str = ""
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    repaired_arguments: dict[str, Any] | str | None = None
    then: str = "Done. The {tool} tool returned {result}."

    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.match, re.IGNORECASE)


DEFAULT_RULES = [
    Rule(
        match=r"\b(hello|hi|hey|good (morning|afternoon|evening))\b", reply="Hello! How can I help you today?"
    ),
    Rule(match=r"\b(story|tell me about|long answer)\b", reply=STORY),
]


class _JSON(dict[str, Any]):
    """A tool result that renders as compact JSON in ``{result}`` and indexes like a dict."""

    def __format__(self, spec: str) -> str:
        return json.dumps(self, separators=(",", ":"))


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _system_prompt(messages: list[ChatMessage]) -> str:
    return next((m.content for m in messages if m.role == "system"), "")


def parse_rules(raw: str) -> list[Rule]:
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise ValueError("rules must be a JSON list")
        rules = [Rule.model_validate(item) for item in items]
        for rule in rules:
            rule.pattern()
    except (ValueError, ValidationError, re.error) as exc:
        raise ValueError(f"invalid scripted LLM rules: {exc}") from exc
    return rules


class ScriptedLLM:
    def __init__(self, choice: LLMProvider) -> None:
        self.name = "scripted"
        options = choice.options
        self.rules = (
            parse_rules(options["rules"]) + DEFAULT_RULES if "rules" in options else list(DEFAULT_RULES)
        )
        self.token_delay = float(options.get("token_delay_ms", "0")) / 1000
        self.first_token_delay = float(options.get("first_token_delay_ms", "0")) / 1000
        self.fail = options.get("fail", "").lower() in {"1", "true", "yes"}

    def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        return self._stream(messages, [t.name for t in tools])

    async def _stream(self, messages: list[ChatMessage], tool_names: list[str]) -> AsyncIterator[LLMChunk]:
        if self.fail:
            raise ProviderError("scripted LLM configured to fail")
        say, call = self.decide(messages, tool_names)
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        for i, word in enumerate(say.split()):
            if i and self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield LLMChunk(text=word if i == 0 else " " + word)
        if call is not None:
            yield LLMChunk(tool_call=call)

    def decide(self, messages: list[ChatMessage], tool_names: list[str]) -> tuple[str, ToolCall | None]:
        """What to say, and which tool to call, after ``messages`` (pure)."""
        user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        rule = next((r for r in self.rules if r.pattern().search(user_text)), None)
        call_id = f"call_{len(messages)}"
        if messages and messages[-1].role == "tool":
            return self._after_tool(messages, rule, tool_names, call_id)
        if rule is None:
            return (
                f"You said: {user_text.strip()}." if user_text.strip() else "Sorry, I did not catch that."
            ), None
        if rule.tool and rule.tool in tool_names:
            return rule.say, ToolCall(id=call_id, name=rule.tool, arguments=_arguments_text(rule.arguments))
        if rule.tool:
            return f"Sorry, I cannot use {rule.tool} right now.", None
        return rule.reply.replace("{system_prompt}", _system_prompt(messages)), None

    def _after_tool(
        self, messages: list[ChatMessage], rule: Rule | None, tool_names: list[str], call_id: str
    ) -> tuple[str, ToolCall | None]:
        result_msg = messages[-1]
        call = next(
            (c for m in reversed(messages) for c in m.tool_calls if c.id == result_msg.tool_call_id), None
        )
        tool = call.name if call else "tool"
        try:
            parsed = json.loads(result_msg.content)
        except ValueError:
            parsed = {"text": result_msg.content}
        result = _JSON(parsed) if isinstance(parsed, dict) else _JSON(value=parsed)
        error = result.get("error")
        if error == "invalid_arguments" and call is not None and tool in tool_names:
            repaired = rule.repaired_arguments if rule is not None else None
            arguments = call.arguments if repaired is None else _arguments_text(repaired)
            return "", ToolCall(id=call_id, name=tool, arguments=arguments)
        if error:
            return f"Sorry, I could not complete the {tool} request.", None
        template = rule.then if rule is not None and rule.tool == tool else Rule(match="").then
        try:
            return template.format(result=result, tool=tool), None
        except (KeyError, IndexError, ValueError):
            return f"Done. The {tool} tool returned {result}.", None
