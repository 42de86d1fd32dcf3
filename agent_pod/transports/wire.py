"""Session events on the wire: voicefleet.v1.ServerEvent for gRPC, JSON for the WebRTC data channel."""

from __future__ import annotations

from voicefleet.v1 import agent_pb2

from ..pipeline.events import (
    AgentText,
    ErrorEvent,
    Interruption,
    MigrationCompleted,
    MigrationOffer,
    SessionEnded,
    SessionEvent,
    ToolEvent,
    TurnMetrics,
    UserTranscript,
)

_TOOL_STATES = {
    "started": agent_pb2.ToolEvent.STARTED,
    "succeeded": agent_pb2.ToolEvent.SUCCEEDED,
    "failed": agent_pb2.ToolEvent.FAILED,
    "timed_out": agent_pb2.ToolEvent.TIMED_OUT,
    "cancelled": agent_pb2.ToolEvent.CANCELLED,
    "invalid_arguments": agent_pb2.ToolEvent.INVALID_ARGUMENTS,
}


def event_to_proto(event: SessionEvent) -> agent_pb2.ServerEvent:
    """The ServerEvent for a session event (the two mirror each other field by field)."""
    match event:
        case UserTranscript():
            return agent_pb2.ServerEvent(
                transcript=agent_pb2.UserTranscript(turn_id=event.turn_id, text=event.text, final=event.final)
            )
        case AgentText():
            return agent_pb2.ServerEvent(
                agent_text=agent_pb2.AgentText(
                    turn_id=event.turn_id,
                    text=event.text,
                    played_text=event.played_text,
                    final=event.final,
                    interrupted=event.interrupted,
                )
            )
        case Interruption():
            return agent_pb2.ServerEvent(
                interruption=agent_pb2.Interruption(
                    turn_id=event.turn_id, played_text=event.played_text, played_ms=event.played_ms
                )
            )
        case ToolEvent():
            return agent_pb2.ServerEvent(
                tool=agent_pb2.ToolEvent(
                    call_id=event.call_id,
                    name=event.name,
                    state=_TOOL_STATES[event.state],
                    arguments_json=event.arguments_json,
                    result_json=event.result_json,
                    error=event.error,
                    attempt=event.attempt,
                )
            )
        case TurnMetrics():
            return agent_pb2.ServerEvent(
                metrics=agent_pb2.TurnMetrics(
                    turn_id=event.turn_id,
                    response_latency_ms=event.response_latency_ms,
                    stt_final_ms=event.stt_final_ms,
                    llm_first_token_ms=event.llm_first_token_ms,
                    tts_first_audio_ms=event.tts_first_audio_ms,
                )
            )
        case ErrorEvent():
            return agent_pb2.ServerEvent(
                error=agent_pb2.Error(
                    code=agent_pb2.Error.Code.Value(event.code), message=event.message, fatal=event.fatal
                )
            )
        case SessionEnded():
            return agent_pb2.ServerEvent(ended=agent_pb2.SessionEnded(reason=event.reason))
        case MigrationOffer():
            return agent_pb2.ServerEvent(
                migrate=agent_pb2.MigrationOffer(
                    pod=event.pod,
                    grpc_address=event.grpc_address,
                    webrtc_url=event.webrtc_url,
                    migration_token=event.migration_token,
                    follow_within_ms=event.follow_within_ms,
                )
            )
        case MigrationCompleted():
            return agent_pb2.ServerEvent(
                migrated=agent_pb2.MigrationCompleted(
                    from_pod=event.from_pod, gap_ms=event.gap_ms, replayed_ms=event.replayed_ms
                )
            )
    raise TypeError(f"not a session event: {event!r}")


def event_to_json(event: SessionEvent) -> str:
    """The data-channel form: the event's fields plus its ``type``."""
    return event.model_dump_json()
