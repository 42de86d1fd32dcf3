"""The audit record of every tool call: one structured log line on ``voicefleet.audit``, kept on the
session and counted."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from ..config import Model
from ..conversation import ConfirmationRecord
from ..tool_metrics import TOOL_AUDIT_RECORDS_TOTAL

audit_log = logging.getLogger("voicefleet.audit")

AuditOutcome = Literal[
    "succeeded",
    "replayed",
    "failed",
    "timed_out",
    "cancelled",
    "invalid_arguments",
    "awaiting_confirmation",
    "declined",
    "circuit_open",
    "concurrency_limited",
    "duplicate_in_flight",
]


class ToolAuditRecord(Model):
    session_id: str
    agent: str
    node: str = Field(default="", description="The flow node the call was made in (empty without flows).")
    turn_id: str = ""
    tool: str
    source: Literal["http", "mcp"] = "http"
    call_id: str
    arguments_sha256: str = ""
    idempotency_key: str = ""
    outcome: AuditOutcome
    attempts: int = 0
    latency_ms: float = 0.0
    confirmation: ConfirmationRecord | None = Field(
        default=None, description="The caller's answer that ran (or declined) the call: turn, words, time."
    )
    error: str = ""


def emit(record: ToolAuditRecord) -> None:
    TOOL_AUDIT_RECORDS_TOTAL.labels(tool=record.tool, outcome=record.outcome).inc()
    audit_log.info(
        "tool %s %s",
        record.tool,
        record.outcome,
        extra={"session_id": record.session_id, "audit": record.dump()},
    )
