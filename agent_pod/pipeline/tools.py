"""Tool calls of the LLM, executed against the tool's HTTP endpoint or MCP server.

Arguments are validated with the tool's JSON schema before anything is sent;
invalid or unparsable arguments go back to the LLM as a tool error so it can
correct them (``max_argument_repairs`` times per tool and turn). Each attempt
has its own timeout; 5xx answers, timeouts and connection errors are retried
``retries`` times. Every call ends in exactly one terminal state. A call whose
turn was interrupted before the request went out never sends it.

The orchestration layer (agent_pod/tools, docs/tools.md) wraps every call,
whatever its source: a side-effecting call runs at most once per idempotency
key (the key travels as ``Idempotency-Key`` on every attempt), a ``confirm`` tool
runs only after the caller's yes, the tool's breaker and concurrency limit guard
the pod, and each call leaves one audit record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import aiohttp
import jsonschema

from ..config import ToolSpec
from ..conversation import ChatMessage, ConfirmationRecord, Conversation, PendingConfirmation, ToolCall
from ..providers.credentials import resolve_credential
from ..tool_metrics import (
    TOOL_CALL_SECONDS,
    TOOL_CONFIRMATIONS_TOTAL,
    TOOL_IDEMPOTENCY_STORE_ERRORS_TOTAL,
    TOOL_IDEMPOTENT_REPLAYS_TOTAL,
)
from ..tools import audit
from ..tools.confirmation import answer_counts, classify, question_heard
from ..tools.guards import Refused
from ..tools.idempotency import (
    StoreErrors,
    arguments_sha256,
    canonical_json,
    idempotency_key,
    run_once,
)
from ..tools.mcp_source import McpTool, McpToolError, call_tool
from ..tools.outcome import ToolOutcome, cancelled_outcome, error_content
from ..tools.platform import ToolPlatform
from .events import ToolEvent, ToolState
from .recorder import PipelineRecorder

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = 0.05
AUDIT_KEPT = 1000  # audit records a session keeps (the log has them all): bounded memory per call
LEASE_MARGIN_SECONDS = 5.0  # an idempotency lock outlives the call's whole retry budget by this much


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


def describe_call(name: str, args: dict[str, Any]) -> str:
    """``book_table with time=19:00, people=2``: the action the caller is asked to confirm."""
    if not args:
        return name
    return f"{name} with " + ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in args.items()
    )


@dataclass
class _CallContext:
    """What the audit record of one call needs, gathered as the call goes."""

    turn_id: str
    source: Literal["http", "mcp"]
    started: float = field(default_factory=time.monotonic)
    arguments_sha256: str = ""
    idempotency_key: str = ""
    confirmation: ConfirmationRecord | None = None


class ToolRunner:
    """Executes the tool calls of one session; ``emit`` receives the ToolEvents, ``recorder`` counts
    every terminal one, ``audit`` keeps the session's audit records. ``node`` names the flow node a
    call is made in (flows set it)."""

    def __init__(
        self,
        tools: list[ToolSpec],
        session_id: str,
        emit: Callable[[ToolEvent], None],
        recorder: PipelineRecorder | None = None,
        *,
        platform: ToolPlatform | None = None,
        conversation: Conversation | None = None,
        agent: str = "local",
        namespace: str = "default",
    ) -> None:
        self.http_tools = {t.name: t for t in tools}
        self.session_id = session_id
        self.emit = emit
        self.recorder = recorder or PipelineRecorder()
        self.platform = platform or ToolPlatform()
        self.conversation = conversation or Conversation(session_id=session_id, prompt_id="")
        self.agent, self.namespace = agent, namespace
        self.node: Callable[[], str] = lambda: ""
        self.audit: deque[audit.ToolAuditRecord] = deque(maxlen=AUDIT_KEPT)
        self._http: aiohttp.ClientSession | None = None
        self._attempts: dict[str, int] = {}  # call id -> attempts started so far
        self._calls: dict[str, _CallContext] = {}

    @property
    def tools(self) -> dict[str, ToolSpec]:
        """Every tool of the session: the HTTP ones, then the MCP ones listed so far (an HTTP tool wins a
        name clash)."""
        mcp = {name: t.spec for name, t in self.platform.mcp.tools.items() if name not in self.http_tools}
        return {**self.http_tools, **mcp}

    def offered(self) -> list[ToolSpec]:
        return list(self.tools.values())

    def _mcp_tool(self, name: str) -> McpTool | None:
        return None if name in self.http_tools else self.platform.mcp.tools.get(name)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    def finish(self, call: ToolCall, outcome: ToolOutcome, attempt: int | None = None) -> ToolOutcome:
        """Emit the terminal event of ``call``, count it and write its audit record (``attempt`` defaults
        to the attempts made)."""
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
        self._audit(call, outcome, attempt)
        return outcome

    def _audit(self, call: ToolCall, outcome: ToolOutcome, attempts: int) -> None:
        ctx = self._calls.pop(call.id, None) or self._context(call, "")
        record = audit.ToolAuditRecord(
            session_id=self.session_id,
            agent=self.agent,
            node=self.node(),
            turn_id=ctx.turn_id,
            tool=call.name,
            source=ctx.source,
            call_id=call.id,
            arguments_sha256=ctx.arguments_sha256,
            idempotency_key=ctx.idempotency_key,
            outcome=outcome.audit or cast(audit.AuditOutcome, outcome.state),  # terminal: never "started"
            attempts=attempts,
            latency_ms=round((time.monotonic() - ctx.started) * 1000, 3),
            confirmation=ctx.confirmation,
            error=outcome.error,
        )
        self.audit.append(record)
        audit.emit(record)

    def _context(self, call: ToolCall, turn_id: str) -> _CallContext:
        return _CallContext(turn_id=turn_id, source="mcp" if self._mcp_tool(call.name) else "http")

    def check(
        self, call: ToolCall, repairs_left: int, turn_id: str = ""
    ) -> tuple[dict[str, Any] | None, ToolOutcome | None]:
        """Validate a call: (arguments, None) to go ahead, or (None, terminal outcome)."""
        self._calls[call.id] = self._context(call, turn_id)
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
        self, call: ToolCall, args: dict[str, Any], interrupted: Callable[[], bool], turn_id: str = ""
    ) -> ToolOutcome:
        """Run a validated call: a confirm-tool is proposed to the caller instead, a side-effecting one
        runs at most once per idempotency key."""
        spec = self.tools[call.name]
        ctx = self._calls.setdefault(call.id, self._context(call, turn_id))
        ctx.arguments_sha256 = arguments_sha256(args)
        if spec.confirm and (ctx.confirmation is None or ctx.confirmation.decision != "yes"):
            return self._propose(call, args, turn_id)
        if not spec.has_side_effects:
            return await self._guarded(call, spec, args, interrupted, "")
        key = ctx.idempotency_key = idempotency_key(
            self.namespace, self.agent, self.session_id, spec.name, args
        )
        ran: ToolOutcome | None = None

        async def once() -> str | None:
            nonlocal ran
            ran = await self._guarded(call, spec, args, interrupted, key)
            return ran.result_json if ran.state == "succeeded" else None

        budget = spec.timeout_seconds * (spec.retries + 1) + RETRY_BACKOFF_SECONDS * spec.retries**2
        options: dict[str, Any] = {
            "lease_seconds": budget + LEASE_MARGIN_SECONDS,
            "ttl_seconds": spec.idempotency_ttl_seconds,
            "wait_seconds": budget + LEASE_MARGIN_SECONDS,
        }
        try:
            done = await run_once(self.platform.store, key, once, **options)
        except StoreErrors as exc:  # before anything was sent: this pod's memory stands in
            TOOL_IDEMPOTENCY_STORE_ERRORS_TOTAL.inc()
            log.warning("session %s tool %s: idempotency store failed: %s", self.session_id, spec.name, exc)
            done = await run_once(self.platform.fallback, key, once, **options)
        if ran is not None:
            return ran
        if done.replayed:
            TOOL_IDEMPOTENT_REPLAYS_TOTAL.labels(tool=spec.name).inc()
            value = done.value or "{}"
            return self.finish(call, ToolOutcome("succeeded", value, result_json=value, audit="replayed"), 0)
        msg = f"an identical {spec.name} call is still running; wait for its result instead of calling again"
        outcome = ToolOutcome(
            "failed", error_content("duplicate_in_flight", msg), error=msg, audit="duplicate_in_flight"
        )
        return self.finish(call, outcome, 0)

    def _propose(self, call: ToolCall, args: dict[str, Any], turn_id: str) -> ToolOutcome:
        """A confirm-tool's first call: kept in the snapshot as pending, and the LLM asked to confirm."""
        self.conversation.pending_confirmation = PendingConfirmation(
            call=ToolCall(id=call.id, name=call.name, arguments=canonical_json(args)),
            proposed_turn_id=turn_id,
            proposed_at=time.time(),
        )
        action = describe_call(call.name, args)
        content = json.dumps(
            {
                "status": "confirmation_required",
                "action": action,
                "instruction": f"Nothing was done yet. Ask the caller to confirm: {action}. "
                "It runs only once they say yes.",
            }
        )
        return self.finish(
            call,
            ToolOutcome("cancelled", content, error="confirmation_required", audit="awaiting_confirmation"),
            0,
        )

    async def resolve_confirmation(
        self, turn_id: str, words: str, interrupted: Callable[[], bool]
    ) -> tuple[ToolCall, ToolOutcome] | None:
        """At the start of a caller turn: the answer to a pending proposal. yes runs the call, no declines
        it, anything else leaves it pending; the LLM sees which as a tool call and its result, appended
        to the conversation after the caller's message. Returns the call that ran and its terminal
        outcome (a flow's transition may follow it), else None."""
        pending = self.conversation.pending_confirmation
        if pending is None or not answer_counts(turn_id, pending.proposed_turn_id):
            return None
        answer = classify(words)
        heard = question_heard(self.conversation.messages, pending.call.id)
        if not heard:  # the caller cut the agent off before it asked: their words answer something else
            answer = "unclear"
        TOOL_CONFIRMATIONS_TOTAL.labels(decision=answer).inc()
        record = ConfirmationRecord(turn_id=turn_id, words=words, at=time.time(), decision=answer)
        log.info(
            "session %s: caller answered %s to %s (proposed in %s)",
            self.session_id,
            answer,
            pending.call.name,
            pending.proposed_turn_id,
            extra={"session_id": self.session_id, "confirmation": record.dump()},
        )
        call = ToolCall(
            id=f"{pending.call.id}-{turn_id}", name=pending.call.name, arguments=pending.call.arguments
        )
        messages = self.conversation.messages
        messages.append(ChatMessage(role="assistant", tool_calls=[call], turn_id=turn_id))
        outcome = cancelled_outcome()
        try:
            args, refused = self.check(call, 0, turn_id)
            if refused is not None:  # the tool is gone or its schema changed (a new revision): drop it
                self.conversation.pending_confirmation = None
                outcome = refused
                return None
            assert args is not None
            action = describe_call(call.name, args)
            if answer == "unclear":
                ask = (
                    "Ask again for a clear yes or no." if heard else "They did not hear the question: ask it."
                )
                status = {
                    "status": "confirmation_pending",
                    "message": f"The caller has not confirmed {action}; nothing was done. {ask}",
                }
                outcome = ToolOutcome(
                    "cancelled",
                    json.dumps(status),
                    error="confirmation_pending",
                    audit="awaiting_confirmation",
                )
                self.finish(call, outcome, 0)
                return None
            self.conversation.pending_confirmation = None
            self._calls[call.id].confirmation = record
            if answer == "yes":
                outcome = await self.execute(call, args, interrupted, turn_id)
                return call, outcome
            status = {"status": "declined", "message": f"The caller declined: {action} was not done."}
            outcome = ToolOutcome("cancelled", json.dumps(status), error="declined", audit="declined")
            self.finish(call, outcome, 0)
            return None
        except asyncio.CancelledError:
            if call.id in self._calls:  # started, not finished: the caller interrupted it
                self.finish(call, outcome)
            raise
        finally:
            messages.append(
                ChatMessage(role="tool", content=outcome.content, tool_call_id=call.id, turn_id=turn_id)
            )

    async def _guarded(
        self,
        call: ToolCall,
        spec: ToolSpec,
        args: dict[str, Any],
        interrupted: Callable[[], bool],
        key: str,
    ) -> ToolOutcome:
        """The call behind the tool's breaker and concurrency limit (both of this pod)."""
        guards = self.platform.guards
        try:
            breaker = guards.admit(spec.name, spec.breaker)
        except Refused as exc:
            return self.finish(call, exc.outcome(), 0)
        healthy: bool | None = None
        started = time.monotonic()
        try:
            async with guards.slot(spec.name, spec.concurrency):
                outcome = await self._attempts_loop(call, spec, args, interrupted, key)
            TOOL_CALL_SECONDS.labels(tool=spec.name).observe(time.monotonic() - started)
            if outcome.state == "succeeded":
                healthy = True
            elif outcome.transient:
                healthy = False
            return outcome
        except Refused as exc:
            return self.finish(call, exc.outcome(), 0)
        finally:
            guards.record(spec.name, breaker, healthy)

    async def _attempts_loop(
        self,
        call: ToolCall,
        spec: ToolSpec,
        args: dict[str, Any],
        interrupted: Callable[[], bool],
        key: str,
    ) -> ToolOutcome:
        """Run a validated call with retries; ``interrupted`` is checked right before each request."""
        mcp = self._mcp_tool(spec.name)
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
                    if mcp is not None:
                        status, body = 200, await call_tool(mcp, args, key)
                    else:
                        status, body = await self._request(spec, args, key)
            except TimeoutError:
                timed_out, last_error = True, f"no answer within {spec.timeout_seconds:g} s"
            except (McpToolError, ValueError) as exc:  # the tool said no / bad header secret: no retry
                outcome = ToolOutcome("failed", error_content("failed", str(exc)), error=str(exc))
                return self.finish(call, outcome, attempt)
            except (aiohttp.ClientError, OSError) as exc:
                timed_out, last_error = False, f"request failed: {type(exc).__name__}: {exc}"
            except Exception as exc:  # the MCP client's transport errors (httpx, exception groups)
                if mcp is None:
                    raise
                timed_out, last_error = False, f"MCP call failed: {type(exc).__name__}: {exc}"
            else:
                if status < 400:
                    result = _as_json_text(body)
                    return self.finish(call, ToolOutcome("succeeded", result, result_json=result), attempt)
                timed_out, last_error = False, f"HTTP {status}: {body[:200]}"
                if status < 500:
                    outcome = ToolOutcome("failed", error_content("failed", last_error), error=last_error)
                    return self.finish(call, outcome, attempt)  # the tool rejected the call: no retry
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
        return self.finish(call, ToolOutcome(state, content, error=last_error, transient=True), attempts)

    async def _request(self, spec: ToolSpec, args: dict[str, Any], key: str) -> tuple[int, str]:
        headers = self._headers(spec)
        if key:
            headers["Idempotency-Key"] = key
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
