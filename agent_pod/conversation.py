"""The conversation of one session: what the LLM sees, what Redis snapshots.

Assistant messages hold only what was actually played to the caller
(audio-first truth); an interrupted turn is cut at the interruption point.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config import Model


class ToolCall(Model):
    id: str
    name: str
    arguments: str = Field(description="JSON text of the arguments, as the LLM produced it.")


class ChatMessage(Model):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    turn_id: str | None = None
    interrupted: bool = False


class Conversation(Model):
    """Everything needed to resume a call on another pod."""

    session_id: str
    prompt_id: str = Field(description="Prompt version (label@hash) the session runs with.")
    messages: list[ChatMessage] = Field(
        default_factory=list, description="History without the system prompt."
    )
    turns: int = Field(default=0, description="Completed agent turns.")
