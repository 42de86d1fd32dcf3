"""The context and memory of one live call: what each LLM request carries, and the background work
that keeps it small and up to date.

The session calls ``messages()`` at the start of a turn (pure assembly, microseconds) and
``turn_finished()`` when a turn is recorded. Tool results mapped into memory are written right there (a
dict update; the turn's own snapshot carries them). Extraction and summaries run afterwards as one
background job at a time, in turn order, and never hold up the next turn; each ends with a snapshot, so
a call resumed elsewhere has them. A failing extractor or summariser logs and counts, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ..config import AgentConfig, ContextSpec, MemoryLookup
from ..conversation import ChatMessage, Conversation
from ..pipeline.turn import AgentTurn
from ..providers.base import ChatModel, ProviderError
from ..providers.fallback import FallbackLLM, chain
from ..providers.registry import provider_class
from ..providers.shared import per_pod
from ..tools.platform import ToolPlatform
from . import metrics
from .assembler import assemble
from .blocks import MemoryBlock, WriteResult, initial_blocks, merge_blocks
from .compaction import fold_summary, summary_input, turns_to_summarize
from .lookups import Lookups
from .persistence import CallerMemory
from .summary import summarize
from .writers import apply_extraction, apply_tool_write, extraction_request, parse_extraction

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
FINAL_EXTRACTION_SECONDS = 5.0  # how long a closing call with caller memory waits for its last extraction


def budgeted(prompt_text: str, conversation: Conversation, spec: ContextSpec) -> list[ChatMessage]:
    """The assembled context of a turn's first LLM request, counted in the metrics (any agent or node)."""
    assembly = assemble(prompt_text, conversation, spec)
    metrics.CONTEXT_TOKENS.observe(assembly.tokens)
    if assembly.left_out_turns:
        metrics.CONTEXT_TURNS_LEFT_OUT_TOTAL.inc(assembly.left_out_turns)
    return assembly.messages


class ContextEngine:
    def __init__(
        self,
        config: AgentConfig,
        conversation: Callable[[], Conversation],
        llm: ChatModel,
        snapshot: Callable[[], Awaitable[None]],
        log: Log,
        caller_memory: CallerMemory | None = None,
        tool_platform: ToolPlatform | None = None,
    ) -> None:
        self._config = config
        self._conversation = conversation
        self._llm = llm
        self._extraction_llm = llm
        if (choice := config.memory.extraction.llm) is not None:
            # Its own timeout, as the pipeline's chain has: a hung extractor must not hold the worker.
            # Built once per pod, not per call.
            self._extraction_llm = per_pod(
                "extraction",
                choice,
                lambda: FallbackLLM(
                    chain([provider_class("llm", choice.provider)(choice)], [choice.timeout_seconds])
                ),
            )
        self._snapshot = snapshot
        self._log = log
        self._caller_memory = caller_memory
        self._jobs: asyncio.Queue[tuple[float, list[ChatMessage]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._dirty = False  # memory changed since it was last saved for the caller
        self.write_lags: list[float] = []  # seconds, per extraction written (benchmarks read them)
        convo = conversation()
        convo.memory = merge_blocks(initial_blocks(config.memory.blocks), convo.memory)
        self.lookups: Lookups | None = None
        if config.memory.lookups:
            self.lookups = Lookups(config, convo.session_id, self._lookup_result, tool_platform)

    @property
    def memory(self) -> list[MemoryBlock]:
        return self._conversation().memory

    async def start(self) -> None:
        """A new call of a known caller starts with the memory of the caller's previous calls; lookups
        of the call's start begin (in the background)."""
        convo = self._conversation()
        if convo.turns or convo.messages:
            return  # a resumed call: its snapshot has its memory, and its lookups ran
        if self._caller_memory is not None:
            carried = await self._caller_memory.load(convo.metadata)
            if carried:
                convo.memory = merge_blocks(convo.memory, carried)
        if self.lookups is not None:
            self.lookups.trigger("session_start", convo.metadata)

    def caller_said(self, text: str) -> None:
        """A final caller transcript: lookups that follow the caller's words begin (in the background)."""
        if self.lookups is not None:
            self.lookups.trigger("caller_turn", self._conversation().metadata, text)

    def messages(self) -> list[ChatMessage]:
        """The context of the next LLM request, within the token budget."""
        return budgeted(self._config.prompt_text, self._conversation(), self._config.context)

    def turn_finished(self, turn: AgentTurn) -> None:
        """The turn is in the history: apply its tool writes now, queue the rest for the background."""
        changed = self._tool_writes(turn)
        self._dirty |= changed
        extract = self._config.memory.extraction.enabled
        if changed or extract or self._config.context.summarize:
            user = ChatMessage(role="user", content=turn.user.text, turn_id=turn.turn_id)
            self._idle.clear()
            self._jobs.put_nowait((time.monotonic(), [user, *turn.history()] if extract else []))
            if self._worker is None:
                self._worker = asyncio.create_task(self._work(), name="context-worker")

    async def wait_idle(self) -> None:
        """Until the queued background work is done (tests and benchmarks)."""
        await self._idle.wait()

    async def aclose(self) -> None:
        if self.lookups is not None:
            await self.lookups.aclose()
        if self._caller_memory is not None:
            # The call's last turn is worth remembering for the next call: its extraction may finish.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINAL_EXTRACTION_SECONDS):
                    await self._idle.wait()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    # ------------------------------------------------------------------ background

    def _tool_writes(self, turn: AgentTurn) -> bool:
        writes = self._config.memory.tool_writes
        changed = False
        for rnd in turn.rounds:
            for call in rnd.tool_calls:
                outcome = turn.outcomes.get(call.id)
                if outcome is None or outcome.state != "succeeded":
                    continue
                for write in (w for w in writes if w.tool == call.name):
                    changed |= self._count("tool", apply_tool_write(self.memory, write, outcome.result_json))
        return changed

    async def _lookup_result(self, lookup: MemoryLookup, result_json: str) -> None:
        if self._count("lookup", apply_tool_write(self.memory, lookup, result_json)):
            await self._snapshot()
            if self._caller_memory is not None:
                await self._caller_memory.save(self._conversation().metadata, self.memory)

    def _count(self, source: str, result: WriteResult) -> bool:
        metrics.MEMORY_WRITES_TOTAL.labels(source, "written" if result.written else "refused").inc()
        if not result.written:
            self._log.warning("memory write (%s) refused: %s", source, result.reason)
        return result.written

    async def _work(self) -> None:
        while True:
            ended, exchange = await self._jobs.get()
            while not self._jobs.empty():  # turns that ended meanwhile: one extraction reads them all
                exchange = exchange + self._jobs.get_nowait()[1]
            try:
                wrote = bool(exchange) and await self._extract(exchange)
                summarized = await self._summarize()
                if wrote or summarized:
                    await self._snapshot()
                if wrote:
                    lag = time.monotonic() - ended
                    metrics.MEMORY_WRITE_LAG_SECONDS.observe(lag)
                    self.write_lags.append(lag)
                if self._caller_memory is not None and (wrote or self._dirty):
                    self._dirty = False
                    await self._caller_memory.save(self._conversation().metadata, self.memory)
            except Exception:  # the call goes on without this update
                self._log.exception("context background job failed")
            if self._jobs.empty():
                self._idle.set()

    async def _extract(self, exchange: list[ChatMessage]) -> bool:
        request = extraction_request(self.memory, exchange)
        try:
            reply = "".join([chunk.text async for chunk in self._extraction_llm.stream(request, [])])
            update = parse_extraction(self.memory, reply)
        except (ProviderError, ValueError) as exc:
            metrics.MEMORY_EXTRACTIONS_TOTAL.labels("failed").inc()
            self._log.warning("memory extraction failed: %s", exc)
            return False
        metrics.MEMORY_EXTRACTIONS_TOTAL.labels("ok").inc()
        return any([self._count("extraction", r) for r in apply_extraction(self.memory, update)])

    async def _summarize(self) -> bool:
        spec = self._config.context
        convo = self._conversation()
        if not spec.summarize:
            return False
        old = turns_to_summarize(self._config.prompt_text, convo, spec, self._config.session.limits)
        if not old:
            return False
        try:
            text = await summarize(self._llm, summary_input(convo, old), spec.summary_max_words)
        except ProviderError as exc:
            metrics.SUMMARIES_TOTAL.labels("failed").inc()
            self._log.warning("summary of %d messages failed: %s", len(old), exc)
            return False
        if not text:
            metrics.SUMMARIES_TOTAL.labels("failed").inc()
            return False
        fold_summary(convo, old, text)
        metrics.SUMMARIES_TOTAL.labels("made").inc()
        return True
