"""The state of one agent turn and how it becomes history (pure: no I/O, no tasks)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..conversation import ChatMessage, ToolCall
from .playback import TurnPlayback
from .supervisor import Check
from .tools import ToolOutcome, cancelled_outcome


@dataclass
class Round:
    """One LLM request of the turn: the text it streamed and the tools it called."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class UserTurn:
    turn_id: str
    text: str
    ended_at: float  # monotonic time of the end-of-turn decision (final transcript in hand, or text received)
    stt_final_ms: float = 0.0  # the VAD's end of speech -> that decision


@dataclass
class AgentTurn:
    user: UserTurn
    playback: TurnPlayback
    rounds: list[Round] = field(default_factory=list)
    outcomes: dict[str, ToolOutcome] = field(default_factory=dict)  # call id -> terminal outcome
    interrupted: bool = False
    failed: bool = False  # a provider chain (LLM or TTS) ran out during the turn
    task: asyncio.Task[None] | None = None  # the generation; cancelled on barge-in
    first_frame_at: float | None = None
    llm_first_token_ms: float = 0.0
    tts_first_audio_ms: float = 0.0
    checks: list[Check] = field(default_factory=list)  # the supervisor's verdicts, in speaking order
    knowledge_docs: list[str] = field(default_factory=list)  # documents retrieval gave the LLM

    @property
    def turn_id(self) -> str:
        return self.user.turn_id

    @property
    def vetoed(self) -> bool:
        """The supervisor stopped a draft: the rest of the turn is not spoken."""
        return any(c.verdict != "allow" for c in self.checks)

    @property
    def text(self) -> str:
        """Everything generated for the turn (spoken parts only, joined)."""
        return " ".join(r.text.strip() for r in self.rounds if r.text.strip())

    def pending_calls(self) -> list[ToolCall]:
        """Calls the LLM made that have no terminal outcome yet."""
        return [c for r in self.rounds for c in r.tool_calls if c.id not in self.outcomes]

    def cancel_pending(self) -> list[ToolCall]:
        """Give every unfinished call the cancelled outcome; returns those calls."""
        pending = self.pending_calls()
        for call in pending:
            self.outcomes[call.id] = cancelled_outcome()
        return pending

    def history(self) -> list[ChatMessage]:
        """The assistant and tool messages of this turn as the caller heard them.

        Each round's text is cut to what was played. Every tool call keeps its
        paired tool message (cancelled ones included) so the next LLM request is
        valid. The last assistant message is marked interrupted when the caller
        cut the turn short.
        """
        messages: list[ChatMessage] = []
        for i, rnd in enumerate(self.rounds):
            played = self.playback.played_text(i)
            if rnd.tool_calls:
                messages.append(
                    ChatMessage(
                        role="assistant",
                        content=played,
                        tool_calls=list(rnd.tool_calls),
                        turn_id=self.turn_id,
                    )
                )
                for call in rnd.tool_calls:
                    outcome = self.outcomes.get(call.id) or cancelled_outcome()
                    messages.append(
                        ChatMessage(
                            role="tool", content=outcome.content, tool_call_id=call.id, turn_id=self.turn_id
                        )
                    )
            elif played:
                messages.append(ChatMessage(role="assistant", content=played, turn_id=self.turn_id))
        if self.interrupted:
            for msg in reversed(messages):
                if msg.role == "assistant":
                    msg.interrupted = True
                    break
        return messages
