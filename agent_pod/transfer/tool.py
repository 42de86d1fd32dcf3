"""The built-in ``transfer_call`` tool: the LLM hands the call to another agent of the fleet.

Offered only when ``spec.transfer`` is set (and ``tool`` is true). The session answers it itself (no
HTTP endpoint): the hub's transfer controller checks the target and starts the move, which waits for a
quiet moment. A round that transferred the call ends the turn with ``announce``, so the move happens
once that line has played.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ..config import ContextPolicy, HTTPEndpoint, ToolSpec, TransferSpec
from ..conversation import ToolCall
from ..pipeline.events import ToolEvent
from ..pipeline.tools import ToolOutcome, ToolRunner, error_content, parse_arguments
from ..pipeline.turn import Round
from ..sessions.directory import TransferRefused

TOOL_NAME = "transfer_call"
# The spec needs an endpoint; this one is never requested (the session answers the tool itself).
BUILTIN_ENDPOINT = HTTPEndpoint(url="http://voicefleet.invalid/builtin/transfer_call")


@dataclass(frozen=True)
class TransferRequest:
    target: str
    reason: str
    policy: ContextPolicy
    trigger: Literal["tool", "api"]
    decided_unix_ms: int


# Set by the hub for each live call: checks the request and starts the move, or raises TransferRefused.
Requester = Callable[[TransferRequest], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


def tool_spec(spec: TransferSpec) -> ToolSpec:
    return ToolSpec(
        name=TOOL_NAME,
        description="Transfer the caller to another agent who can help better. Say nothing after calling it.",
        parameters={
            "type": "object",
            "properties": {
                "target": {
                    "type": "string",
                    "enum": list(spec.targets),
                    "description": "The agent to transfer to.",
                },
                "reason": {"type": "string", "maxLength": 500, "description": "Why, for the next agent."},
            },
            "required": ["target"],
            "additionalProperties": False,
        },
        endpoint=BUILTIN_ENDPOINT,
        retries=0,
        max_argument_repairs=1,
    )


class TransferTool:
    """The session's side of the tool: offered specs, dispatch, and the end of a transferring round."""

    def __init__(self, spec: TransferSpec | None) -> None:
        self.spec = spec
        self.tools = [tool_spec(spec)] if spec is not None and spec.tool else []
        self.request: Requester | None = None
        self._accepted: set[str] = set()  # ids of the calls that started a transfer

    def offers(self, name: str) -> bool:
        return bool(self.tools) and name == TOOL_NAME

    async def call(self, call: ToolCall, runner: ToolRunner) -> ToolOutcome:
        """Answer one ``transfer_call``; every call ends in one terminal ToolEvent, as other tools do."""
        runner.emit(
            ToolEvent(
                call_id=call.id, name=call.name, state="started", arguments_json=call.arguments, attempt=1
            )
        )
        assert self.spec is not None
        args, why = parse_arguments(self.tools[0], call.arguments)
        if args is None:
            content = error_content("invalid_arguments", why, hint="do not call this tool again this turn")
            return runner.finish(call, ToolOutcome("invalid_arguments", content, error=why), 1)
        request = TransferRequest(
            target=args["target"],
            reason=args.get("reason", ""),
            policy=self.spec.context_policy,
            trigger="tool",
            decided_unix_ms=now_ms(),
        )
        try:
            if self.request is None:
                raise TransferRefused("no_fleet", "this call cannot be transferred (no fleet)")
            await self.request(request)
        except TransferRefused as exc:
            content = error_content("transfer_refused", exc.message, reason=exc.reason)
            return runner.finish(call, ToolOutcome("failed", content, error=exc.message), 1)
        self._accepted.add(call.id)
        result = json.dumps({"status": "transferring", "target": request.target})
        return runner.finish(call, ToolOutcome("succeeded", result, result_json=result), 1)

    def wrap_up(self, rnd: Round, pieces: asyncio.Queue[tuple[str, int] | None], index: int) -> bool:
        """True when this round started a transfer: the announcement (if any) ends the turn, and no
        further LLM round runs."""
        if not any(call.id in self._accepted for call in rnd.tool_calls):
            return False
        if self.spec is not None and self.spec.announce:
            rnd.text = f"{rnd.text} {self.spec.announce}".strip()  # the turn's text says it too
            pieces.put_nowait((self.spec.announce, index))
        return True
