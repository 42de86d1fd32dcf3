"""The source pod's side of a transfer: the call leaves this agent for another one of the fleet.

Like a migration (transports/migration.py), and through the same caller protocol: wait for a quiet
moment, freeze the call (caller input is held), write the conversation the target gets (by policy) and
place the call on a pod of the target agent in Redis, offer the move to the caller (a MigrationOffer:
clients that follow migrations follow transfers), then hand over the held input and end this side
("migrated"). A transfer that cannot happen leaves the call here, intact: held input is replayed and
the LLM reads a note that the call stayed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, cast

from ..config import AgentConfig
from ..context.summary import summarize
from ..conversation import ChatMessage, Conversation, TransferRecord
from ..pipeline.events import ErrorEvent
from ..providers.base import LLM, ProviderError, Providers
from ..providers.fallback import FallbackLLM, chain, stage_timeouts
from ..sessions.directory import SessionDirectory, TransferRefused
from ..sessions.keys import agent_pod_name
from ..transports import transport_metrics
from ..transports.migration import hand_over, offer, wait_quiet
from .policy import check_target, failure_note, handed_over
from .tool import TransferRequest

if TYPE_CHECKING:
    from ..transports.hub import LiveSession

log = logging.getLogger(__name__)


class Transfers:
    """Starts and carries out the transfers of one pod's calls."""

    def __init__(
        self, config: AgentConfig, directory: SessionDirectory, providers: Providers, pod_name: str
    ) -> None:
        self.config = config
        self.directory = directory
        self.pod_name = pod_name
        self._llm = FallbackLLM(chain(providers.llm, stage_timeouts(config.pipeline.llm)))
        self._moving: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.draining = False

    def attach(self, live: LiveSession) -> None:
        """Let the call's LLM transfer it (the built-in tool)."""
        live.session.transfer.request = functools.partial(self.request, live)

    async def request(self, live: LiveSession, request: TransferRequest) -> None:
        """Check ``request`` and start the move (it waits for a quiet moment); raise TransferRefused."""
        try:
            check_target(self.config.transfer, self.config.agent, request.target)
            if live.id in self._moving or live.migration is not None or self.draining:
                raise TransferRefused("busy", "the call is already being moved")
            if not live.accepts_migration:
                raise TransferRefused(
                    "caller_cannot_follow", "the caller's client does not follow moves (accepts_migration)"
                )
            await self.directory.check_transfer_target(request.target)
        except TransferRefused as exc:
            transport_metrics.TRANSFERS_TOTAL.labels(exc.reason).inc()
            log.info("transfer refused: %s", exc.message, extra={"session_id": live.id})
            raise
        self._moving.add(live.id)
        task = asyncio.get_running_loop().create_task(self._run(live, request), name=f"transfer-{live.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, live: LiveSession, request: TransferRequest) -> None:
        try:
            outcome = await self._move(live, request)
        except Exception:
            log.exception("transfer failed", extra={"session_id": live.id})
            self._stay(live, request, "an internal error", held=False)
            outcome = "error"
        finally:
            self._moving.discard(live.id)
        if outcome:
            transport_metrics.TRANSFERS_TOTAL.labels(outcome).inc()
            log.info("transfer to %s: %s", request.target, outcome, extra={"session_id": live.id})

    async def _move(self, live: LiveSession, request: TransferRequest) -> str:
        """Move the call; the outcome ('' when the call ended on its own first)."""
        spec, session = self.config.transfer, live.session
        assert spec is not None
        follow = self.config.session.migration.follow_timeout_seconds
        if not await wait_quiet(live, time.monotonic() + spec.quiet_wait_seconds):
            if live.finished.is_set():
                return ""
            self._stay(live, request, "no quiet moment came", held=False)
            return "not_quiet"
        session.hold_input()  # synchronously after the quiet check: nothing slips in between
        conversation = await self._handed_over(session.conversation, request)
        try:
            ticket = await self.directory.begin_transfer(live.id, conversation, request.target, follow)
        except TransferRefused as exc:
            self._stay(live, request, exc.message)
            return exc.reason
        answer = await offer(live, ticket, follow)
        followed = answer.done() and answer.result()
        stays = not followed and not live.finished.is_set()
        # A caller that says it could not follow is still here, even if the target admitted it once.
        if stays and await self.directory.abort_transfer(live.id, request.target, ticket.pod, answer.done()):
            self._stay(live, request, "the caller did not reach the other agent")
            return "caller_failed" if answer.done() else "not_followed"
        push = functools.partial(self.directory.push_transfer_handoff, live.id, request.target)
        await hand_over(live, push, agent_pod_name(self.config.agent, self.pod_name))
        return "transferred"

    async def _handed_over(self, conversation: Conversation, request: TransferRequest) -> Conversation:
        record = TransferRecord(
            from_agent=self.config.agent,
            from_pod=self.pod_name,
            to_agent=request.target,
            reason=request.reason,
            policy=request.policy,
            trigger=request.trigger,
            at_unix_ms=request.decided_unix_ms,
        )
        summary: str | None = None
        if request.policy == "summary" and conversation.messages:
            assert self.config.transfer is not None
            try:
                # The fallback chain streams like an LLM, which is all summarize needs.
                llm = cast(LLM, self._llm)
                summary = await summarize(llm, conversation.messages, self.config.transfer.summary_max_words)
            except ProviderError as exc:
                log.warning("transfer summary failed, the history goes instead: %s", exc)
        return handed_over(conversation, record, summary)

    def _stay(self, live: LiveSession, request: TransferRequest, why: str, held: bool = True) -> None:
        """The call stays here: its LLM learns so (when no turn runs), the caller is told, and the input
        held since the freeze is heard."""
        session = live.session
        if session.ended:
            return
        note = failure_note(request.target, why)
        if held or session.quiet:
            session.conversation.messages.append(ChatMessage(role="system", content=note))
        session.notify(ErrorEvent(code="UNAVAILABLE", message=note))
        session.release_input()
