"""The lookup agent: configured tools called in the background, at session start or on each final caller
transcript, their results written into memory blocks while the conversation goes on.

The main turn never waits for a lookup: what it finds is in the context of the next turn. Lookups go
through the session's tool rules (the tool's schema, timeout, retries and breaker) with a runner of
their own whose events stay off the caller's stream: the caller's client only hears of the LLM's tool
calls. Nobody asked for a lookup, so it may only read: its tool must be free of side effects (GET, or
``sideEffects: false``) and need no confirmation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import AgentConfig, MemoryLookup
from ..conversation import ToolCall
from ..pipeline.tools import ToolOutcome, ToolRunner
from ..tools.platform import ToolPlatform
from . import metrics

log = logging.getLogger("voicefleet.context.lookups")


def lookup_arguments(
    lookup: MemoryLookup, metadata: dict[str, str], transcript: str
) -> dict[str, str] | None:
    """The lookup's arguments from their sources, or None when a metadata field is missing (skipped)."""
    args: dict[str, str] = {}
    for name, source in lookup.arguments.items():
        if source == "transcript":
            args[name] = transcript
        elif (value := metadata.get(source.removeprefix("metadata."))) is not None:
            args[name] = value
        else:
            return None
    return args


class Lookups:
    def __init__(
        self,
        config: AgentConfig,
        session_id: str,
        on_result: Callable[[MemoryLookup, str], Awaitable[None]],
        platform: ToolPlatform | None = None,
    ) -> None:
        self._lookups = config.memory.lookups
        # The pod's tool platform: a lookup shares its tool's breaker and limits with the LLM's calls.
        self._runner = ToolRunner(
            config.tools,
            session_id,
            lambda event: None,
            platform=platform,
            agent=config.agent,
            namespace=config.namespace,
        )
        self._on_result = on_result
        self._tasks: set[asyncio.Task[None]] = set()
        self._usable: set[str] = set()
        for i, lookup in enumerate(self._lookups):  # a lookup that cannot run is left out; the call goes on
            spec = self._runner.tools.get(lookup.tool)
            if spec is None:
                log.error("memory.lookups[%d].tool: no tool named %r in tools", i, lookup.tool)
            elif spec.has_side_effects or spec.confirm:
                # Nobody asked for a background call: it may only read (GET, or sideEffects: false).
                log.error("memory.lookups[%d].tool: %r has side effects or needs confirmation", i, spec.name)
            else:
                self._usable.add(lookup.tool)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def trigger(self, event: str, metadata: dict[str, str], transcript: str = "") -> None:
        for lookup in self._lookups:
            if lookup.trigger != event or lookup.tool not in self._usable:
                continue
            args = lookup_arguments(lookup, metadata, transcript)
            if args is None:
                continue
            task = asyncio.create_task(self._run(lookup, args), name=f"lookup-{lookup.tool}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, lookup: MemoryLookup, args: dict[str, Any]) -> None:
        call = ToolCall(id=f"lookup-{uuid.uuid4().hex[:12]}", name=lookup.tool, arguments=json.dumps(args))
        checked, outcome = self._runner.check(call, 0)
        if checked is not None:
            outcome = await self._runner.execute(call, checked, lambda: False)
        assert isinstance(outcome, ToolOutcome)
        if outcome.state != "succeeded":
            metrics.MEMORY_LOOKUPS_TOTAL.labels("failed").inc()
            log.warning("lookup %s failed: %s", lookup.tool, outcome.error)
            return
        metrics.MEMORY_LOOKUPS_TOTAL.labels("ok").inc()
        try:
            await self._on_result(lookup, outcome.result_json)
        except Exception:  # the call goes on without this result
            log.exception("lookup %s: writing its result failed", lookup.tool)

    async def wait(self) -> None:
        """Until the running lookups are done (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._runner.aclose()
