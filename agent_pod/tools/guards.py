"""Per-tool, per-pod protection: a circuit breaker and a concurrency limit with bounded waiting.

Shared by every session of the pod (a ToolPlatform holds one ToolGuards), so a failing tool is shed
pod-wide and one busy tool cannot take every slot of the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Literal

from ..config import BreakerSpec, ConcurrencySpec
from ..tool_metrics import (
    TOOL_BREAKER_REJECTIONS_TOTAL,
    TOOL_BREAKER_STATE,
    TOOL_CONCURRENCY_REJECTIONS_TOTAL,
)
from .breaker import STATE_VALUES, Breaker
from .outcome import ToolOutcome, error_content


class Refused(Exception):
    """The call was not sent; ``kind`` names why."""

    def __init__(self, kind: Literal["circuit_open", "concurrency_limited"], message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def outcome(self) -> ToolOutcome:
        """The tool error the LLM gets instead of a result."""
        message = str(self)
        return ToolOutcome("failed", error_content(self.kind, message), error=message, audit=self.kind)


class ToolGuards:
    def __init__(self) -> None:
        self._breakers: dict[str, Breaker] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    def breaker(self, tool: str, spec: BreakerSpec) -> Breaker:
        breaker = self._breakers.get(tool)
        if breaker is None:
            breaker = self._breakers[tool] = Breaker(spec.failure_threshold, spec.cooldown_seconds)
        return breaker

    def admit(self, tool: str, spec: BreakerSpec) -> Breaker:
        """The tool's breaker, when it lets a call through; else Refused."""
        breaker = self.breaker(tool, spec)
        now = time.monotonic()
        if not breaker.allow(now):
            self._export(tool, breaker)
            TOOL_BREAKER_REJECTIONS_TOTAL.labels(tool=tool).inc()
            wait = breaker.retry_after(now)
            why = f"retry in {wait:.0f} s" if wait else "a trial call is running"
            raise Refused(
                "circuit_open",
                f"tool {tool} is unavailable after repeated failures ({why}); do not call it again now",
            )
        self._export(tool, breaker)
        return breaker

    def record(self, tool: str, breaker: Breaker, ok: bool | None) -> None:
        """``ok`` None: the call says nothing about the tool's health (cancelled, rejected by it)."""
        if ok is None:
            breaker.release()
        else:
            breaker.record(ok, time.monotonic())
        self._export(tool, breaker)

    @contextlib.asynccontextmanager
    async def slot(self, tool: str, spec: ConcurrencySpec) -> AsyncIterator[None]:
        sem = self._slots.get(tool)
        if sem is None:
            sem = self._slots[tool] = asyncio.Semaphore(spec.limit)
        try:
            async with asyncio.timeout(spec.queue_timeout_seconds):
                await sem.acquire()
        except TimeoutError:
            TOOL_CONCURRENCY_REJECTIONS_TOTAL.labels(tool=tool).inc()
            raise Refused(
                "concurrency_limited",
                f"tool {tool} is busy ({spec.limit} calls running on this pod); try again shortly",
            ) from None
        try:
            yield
        finally:
            sem.release()

    @staticmethod
    def _export(tool: str, breaker: Breaker) -> None:
        TOOL_BREAKER_STATE.labels(tool=tool).set(STATE_VALUES[breaker.state])
