"""What a session reports to its transport, mirroring voicefleet.v1.ServerEvent 1:1.

Every event carries a ``type`` discriminator so JSON consumers (the WebRTC data
channel, logs) can tell them apart; ``SessionEventAdapter`` parses any of them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserTranscript(_Event):
    type: Literal["user_transcript"] = "user_transcript"
    turn_id: str
    text: str
    final: bool


class AgentText(_Event):
    """``text`` is what was generated for the turn so far; ``played_text`` what reached the caller."""

    type: Literal["agent_text"] = "agent_text"
    turn_id: str
    text: str
    played_text: str
    final: bool
    interrupted: bool = False


class Interruption(_Event):
    type: Literal["interruption"] = "interruption"
    turn_id: str
    played_text: str
    played_ms: int


ToolState = Literal["started", "succeeded", "failed", "timed_out", "cancelled", "invalid_arguments"]
TERMINAL_TOOL_STATES: frozenset[str] = frozenset(
    {"succeeded", "failed", "timed_out", "cancelled", "invalid_arguments"}
)


class ToolEvent(_Event):
    type: Literal["tool"] = "tool"
    call_id: str
    name: str
    state: ToolState
    arguments_json: str = ""
    result_json: str = ""
    error: str = ""
    attempt: int = 0


class TurnMetrics(_Event):
    type: Literal["turn_metrics"] = "turn_metrics"
    turn_id: str
    response_latency_ms: float
    stt_final_ms: float = 0.0
    llm_first_token_ms: float = 0.0
    tts_first_audio_ms: float = 0.0


ErrorCode = Literal[
    "INVALID_ARGUMENT", "UNAUTHENTICATED", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL", "PROVIDER_FAILED"
]


class ErrorEvent(_Event):
    """A fatal error ends the session; others are reported and the session goes on."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    fatal: bool = False


class SessionEnded(_Event):
    type: Literal["session_ended"] = "session_ended"
    reason: str


class MigrationOffer(_Event):
    """The pod moves the call: follow it to ``grpc_address`` / ``webrtc_url`` with ``migration_token``."""

    type: Literal["migration_offer"] = "migration_offer"
    pod: str
    grpc_address: str
    webrtc_url: str
    migration_token: str
    follow_within_ms: int


class MigrationCompleted(_Event):
    """On the new pod: the call was deaf ``gap_ms``; ``replayed_ms`` of held caller audio were heard."""

    type: Literal["migration_completed"] = "migration_completed"
    from_pod: str
    gap_ms: int
    replayed_ms: int


SessionEvent = Annotated[
    UserTranscript
    | AgentText
    | Interruption
    | ToolEvent
    | TurnMetrics
    | ErrorEvent
    | SessionEnded
    | MigrationOffer
    | MigrationCompleted,
    Field(discriminator="type"),
]
SessionEventAdapter: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)
