"""The terminal outcome of a tool call: what the LLM sees next, and how the call is counted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..pipeline.events import ToolState
from .audit import AuditOutcome


@dataclass(frozen=True)
class ToolOutcome:
    state: ToolState
    content: str  # the tool message the LLM sees next
    result_json: str = ""
    error: str = ""
    repairable: bool = False  # invalid arguments the LLM may still correct (repairs left)
    audit: AuditOutcome | None = None  # the audit record's outcome when it is not ``state``
    transient: bool = False  # a failure that says the tool is unhealthy (5xx, timeout, no connection)

    @property
    def failure(self) -> bool:
        """The call gave the turn no usable result: failed, timed out, or invalid arguments with no repair
        left. A cancelled call is the caller's doing, not a failure."""
        if self.state == "invalid_arguments":
            return not self.repairable
        return self.state in ("failed", "timed_out")


def error_content(kind: str, message: str, **extra: Any) -> str:
    return json.dumps({"error": kind, "message": message, **extra})


def cancelled_outcome() -> ToolOutcome:
    return ToolOutcome(
        "cancelled", error_content("cancelled", "interrupted by the caller"), error="cancelled"
    )
