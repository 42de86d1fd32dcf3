"""Tool calls of the LLM, executed against the tool's HTTP endpoint.

Arguments are validated with the tool's JSON schema before anything is sent;
invalid or unparsable arguments go back to the LLM as a tool error so it can
correct them (``max_argument_repairs`` times per tool and turn). Each attempt
has its own timeout; 5xx answers, timeouts and connection errors are retried
``retries`` times. Every call ends in exactly one terminal state. A call whose
turn was interrupted before the request went out never sends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jsonschema

from ..config import ToolSpec
from ..conversation import ToolCall
from ..providers.credentials import resolve_credential
from .events import ToolEvent, ToolState
from .recorder import PipelineRecorder

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = 0.05


@dataclass(frozen=True)
class ToolOutcome:
    state: ToolState
    content: str  # the tool message the LLM sees next
    result_json: str = ""
    error: str = ""
    repairable: bool = False  # invalid arguments the LLM may still correct (repairs left)

    @property
    def failure(self) -> bool:
        """The call gave the turn no usable result: failed, timed out, or invalid arguments with no repair
        left. A cancelled call is the caller's doing, not a failure."""
        if self.state == "invalid_arguments":
            return not self.repairable
        return self.state in ("failed", "timed_out")


def error_content(kind: str, message: str, **extra: Any) -> str:
    return json.dumps({"error": kind, "message": message, **extra})


def parse_arguments(spec: ToolSpec, raw: str) -> tuple[dict[str, Any] | None, str]:
    """(arguments, "") when ``raw`` is a JSON object valid against the tool's schema, else (None, why)."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return None, f"arguments are not valid JSON: {exc}"
    if not isinstance(args, dict):
        return None, "arguments must be a JSON object"
    try:
        jsonschema.validate(args, spec.parameters)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return None, f"{where + ': ' if where else ''}{exc.message}"
    except jsonschema.SchemaError as exc:
        return None, f"the tool's parameter schema is invalid: {exc.message}"
    return args, ""


def cancelled_outcome() -> ToolOutcome:
    return ToolOutcome(
        "cancelled", error_content("cancelled", "interrupted by the caller"), error="cancelled"
    )


class ToolRunner:
    """Executes the tool calls of one session; ``emit`` receives the ToolEvents, ``recorder`` counts
    every terminal one."""

    def __init__(
        self,
        tools: list[ToolSpec],
        session_id: str,
        emit: Callable[[ToolEvent], None],
        recorder: PipelineRecorder | None = None,
    ) -> None:
        self.tools = {t.name: t for t in tools}
        self.session_id = session_id
        self.emit = emit
        self.recorder = recorder or PipelineRecorder()
        self._http: aiohttp.ClientSession | None = None
        self._attempts: dict[str, int] = {}  # call id -> attempts started so far

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    def finish(self, call: ToolCall, outcome: ToolOutcome, attempt: int | None = None) -> ToolOutcome:
        """Emit the terminal event of ``call`` and count it (``attempt`` defaults to the attempts made)."""
        if attempt is None:
            attempt = self._attempts.pop(call.id, 0)
        else:
            self._attempts.pop(call.id, None)
        self.recorder.tool_call_finished(call.name, outcome.state, outcome.failure)
        self.emit(
            ToolEvent(
                call_id=call.id,
                name=call.name,
                state=outcome.state,
                arguments_json=call.arguments,
                result_json=outcome.result_json,
                error=outcome.error,
                attempt=attempt,
            )
        )
        return outcome

    def check(self, call: ToolCall, repairs_left: int) -> tuple[dict[str, Any] | None, ToolOutcome | None]:
        """Validate a call: (arguments, None) to go ahead, or (None, terminal outcome)."""
        self.emit(
            ToolEvent(
                call_id=call.id, name=call.name, state="started", arguments_json=call.arguments, attempt=1
            )
        )
        spec = self.tools.get(call.name)
        if spec is None:
            msg = f"unknown tool {call.name!r}; available: {', '.join(sorted(self.tools)) or 'none'}"
            return None, self.finish(
                call, ToolOutcome("invalid_arguments", error_content("unknown_tool", msg), error=msg)
            )
        args, why = parse_arguments(spec, call.arguments)
        if args is None:
            hint = (
                "correct the arguments and call again" if repairs_left > 0 else "do not call this tool again"
            )
            content = error_content("invalid_arguments", why, repairs_left=max(repairs_left, 0), hint=hint)
            outcome = ToolOutcome("invalid_arguments", content, error=why, repairable=repairs_left > 0)
            return None, self.finish(call, outcome)
        return args, None

    async def execute(
        self, call: ToolCall, args: dict[str, Any], interrupted: Callable[[], bool]
    ) -> ToolOutcome:
        """Run a validated call with retries; ``interrupted`` is checked right before each request."""
        spec = self.tools[call.name]
        attempts = spec.retries + 1
        last_error = ""
        timed_out = False
        for attempt in range(1, attempts + 1):
            if interrupted():
                return self.finish(call, cancelled_outcome(), attempt - 1)
            self._attempts[call.id] = attempt
            if attempt > 1:
                self.emit(
                    ToolEvent(
                        call_id=call.id,
                        name=call.name,
                        state="started",
                        arguments_json=call.arguments,
                        attempt=attempt,
                    )
                )
            try:
                async with asyncio.timeout(spec.timeout_seconds):  # not wait_for: 3.11's can lose a cancel
                    status, body = await self._request(spec, args)
            except TimeoutError:
                timed_out, last_error = True, f"no answer within {spec.timeout_seconds:g} s"
            except (aiohttp.ClientError, OSError) as exc:
                timed_out, last_error = False, f"request failed: {type(exc).__name__}: {exc}"
            except ValueError as exc:  # bad header secret: not worth retrying
                return self.finish(
                    call, ToolOutcome("failed", error_content("failed", str(exc)), error=str(exc)), attempt
                )
            else:
                if status < 400:
                    result = _as_json_text(body)
                    return self.finish(call, ToolOutcome("succeeded", result, result_json=result), attempt)
                timed_out, last_error = False, f"HTTP {status}: {body[:200]}"
                if status < 500:
                    break  # the tool rejected the call: retrying will not help
            log.info(
                "session %s tool %s attempt %d/%d failed: %s",
                self.session_id,
                call.name,
                attempt,
                attempts,
                last_error,
                extra={"session_id": self.session_id},
            )
            if attempt < attempts:
                await asyncio.sleep(RETRY_BACKOFF_SECONDS * attempt)
        state: ToolState = "timed_out" if timed_out else "failed"
        content = error_content(state, last_error)
        return self.finish(
            call, ToolOutcome(state, content, error=last_error), attempts if timed_out else attempt
        )

    async def _request(self, spec: ToolSpec, args: dict[str, Any]) -> tuple[int, str]:
        headers = self._headers(spec)
        ep = spec.endpoint
        if ep.method == "GET":
            query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}
            ctx = self._client().get(ep.url, params=query, headers=headers)
        else:
            ctx = self._client().request(ep.method, ep.url, json=args, headers=headers)
        async with ctx as resp:
            return resp.status, await resp.text()

    def _headers(self, spec: ToolSpec) -> dict[str, str]:
        headers = {"X-Voicefleet-Session": self.session_id}
        ref = spec.endpoint.headers_secret_ref
        if ref is None:
            return headers
        raw = resolve_credential(ref, "")
        if raw is None:
            raise ValueError(f"tool {spec.name}: header secret {ref.name}/{ref.key} is not mounted")
        try:
            extra = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"tool {spec.name}: header secret {ref.name}/{ref.key} is not JSON") from exc
        if not isinstance(extra, dict):
            raise ValueError(f"tool {spec.name}: header secret {ref.name}/{ref.key} must be a JSON object")
        headers.update({str(k): str(v) for k, v in extra.items()})
        return headers


def _as_json_text(body: str) -> str:
    """Tool results go to the LLM as JSON: non-JSON bodies are wrapped."""
    try:
        json.loads(body)
        return body
    except ValueError:
        return json.dumps({"result": body})
