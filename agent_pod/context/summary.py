"""Summaries of conversation history, made by an LLM off the hot path of a turn."""

from __future__ import annotations

from ..conversation import ChatMessage
from ..providers.base import ChatModel

SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below for another agent who takes it over. Keep names, numbers, dates, "
    "what the caller wants, what was promised and what tools returned. At most {max_words} words, plain "
    "prose, no preamble."
)


def transcript_text(messages: list[ChatMessage]) -> str:
    """The messages as a plain transcript (tool calls and results included), for a summariser to read."""
    lines: list[str] = []
    for message in messages:
        if message.role == "system":
            lines.append(f"[note] {message.content}")
        elif message.role == "tool":
            lines.append(f"[tool result] {message.content}")
        else:
            for call in message.tool_calls:
                lines.append(f"[tool call] {call.name}({call.arguments})")
            if message.content:
                lines.append(f"{message.role}: {message.content}")
    return "\n".join(lines)


async def summarize(llm: ChatModel, messages: list[ChatMessage], max_words: int = 120) -> str:
    """A summary of ``messages`` written by ``llm`` (no tools offered). Raises ProviderError when the
    LLM fails; callers fall back to keeping the history as it is."""
    request = [
        ChatMessage(role="system", content=SUMMARY_INSTRUCTIONS.format(max_words=max_words)),
        ChatMessage(role="user", content=transcript_text(messages)),
    ]
    text = ""
    async for chunk in llm.stream(request, []):
        text += chunk.text
    return text.strip()
