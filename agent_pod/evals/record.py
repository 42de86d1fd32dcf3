"""What one eval call recorded, caller turn by caller turn: the input graders judge.

A caller turn can cause several agent turns on the pod: an utterance the VAD cut in two, or a
barge-in (the interrupted answer, then the answer to the interruption). Each is an ``AgentAnswer``;
the turn's text views join them in order."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..pipeline.events import TERMINAL_TOOL_STATES


class ToolCallRecord(BaseModel):
    call_id: str
    name: str
    arguments_json: str = ""
    state: str = "started"  # the last state seen: a terminal one unless the call never ended
    result_json: str = ""
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_TOOL_STATES


class AgentAnswer(BaseModel):
    """One agent turn on the pod: what it heard, generated and played."""

    turn_id: str
    heard: str = Field(default="", description="The pod's final user transcript for this turn.")
    text: str = Field(default="", description="What the agent generated.")
    played_text: str = Field(default="", description="What reached the caller.")
    interrupted: bool = Field(default=False, description="The final AgentText says it was interrupted.")
    interruption_event: bool = Field(default=False, description="The pod sent an Interruption event.")
    response_latency_ms: float | None = Field(
        default=None, description="The pod's TurnMetrics: end of the caller's turn to first agent audio."
    )
    final: bool = Field(default=False, description="The pod finished this turn (final AgentText).")


class TurnRecord(BaseModel):
    """One caller turn of the scenario and everything the agent did in answer to it."""

    caller_text: str
    typed: bool
    barge_in_text: str | None = None
    barge_in_sent: bool = False
    answers: list[AgentAnswer] = []
    tool_calls: list[ToolCallRecord] = []
    errors: list[str] = []
    timed_out: bool = False

    @property
    def heard(self) -> str:
        return " ".join(a.heard for a in self.answers if a.heard)

    @property
    def generated_text(self) -> str:
        return " ".join(a.text for a in self.answers if a.text)

    @property
    def played_text(self) -> str:
        return " ".join(a.played_text for a in self.answers if a.played_text)

    @property
    def response_latency_ms(self) -> float | None:
        """Latency of the first answer to this turn (the caller's own words, not a barge-in)."""
        return self.answers[0].response_latency_ms if self.answers else None


class CallRecord(BaseModel):
    """One run of a scenario: the call as the caller saw it."""

    session_id: str = ""
    pod: str = ""
    turns: list[TurnRecord] = []
    errors: list[str] = Field(default=[], description="Failures of the call itself (connect, stream).")
    ended: str | None = None
    duration_ms: float = 0.0

    @property
    def played_text(self) -> str:
        return " ".join(t.played_text for t in self.turns if t.played_text)

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [call for turn in self.turns for call in turn.tool_calls]


def transcript(record: CallRecord, upto_turn: int | None = None) -> str:
    """The call as plain text for a judge: caller lines, agent lines (what was played), tool calls.

    ``upto_turn`` (0-based) stops after that caller turn."""
    lines: list[str] = []
    turns = record.turns if upto_turn is None else record.turns[: upto_turn + 1]
    for turn in turns:
        lines.append(f"Caller: {turn.caller_text}")
        for call in turn.tool_calls:
            lines.append(f"[tool call] {call.name}({call.arguments_json}) -> {call.state}")
        for index, answer in enumerate(turn.answers):
            if index and turn.barge_in_text:
                lines.append(f"Caller (interrupting): {turn.barge_in_text}")
            suffix = " [interrupted]" if answer.interrupted else ""
            lines.append(f"Agent: {answer.played_text}{suffix}")
    return "\n".join(lines)
