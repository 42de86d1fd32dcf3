"""gRPC callers on the host: sessions from the agent Service (kube-proxy picks the pod), then talk
on the owning pod's IP, as the session API tells them; every answer is checked (tests.chaos.harness)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from tests.chaos.harness import Caller, Channels, Stats, run_callers
from tests.support.wait import async_wait_for


@dataclass
class ServiceFleet:
    """What a caller dials to create or resume a session: the agent Service (kube-proxy balances)."""

    endpoints: list[str] = field(default_factory=list)


async def true(value: bool) -> bool:
    return value


class Calls:
    """CALLERS callers calling in a loop (or holding long calls) until ``finish()``."""

    def __init__(self, fleet: ServiceFleet, count: int, turns: tuple[int, int], think: tuple[float, float]):
        self.stats, self.channels, self.stop = Stats(), Channels(), asyncio.Event()
        self.callers = [
            Caller(f"c{i}", fleet, self.channels, self.stats, random.Random(i)) for i in range(count)
        ]
        coroutines = [self._reported(c, turns, think) for c in self.callers]
        self.task = asyncio.ensure_future(run_callers(self.callers, coroutines))

    async def _reported(self, caller: Caller, turns: tuple[int, int], think: tuple[float, float]) -> None:
        """A caller's loop; an unexpected error shows in ``stats.dropped`` at once, not at the end."""
        try:
            await caller.loop(self.stop, turns=turns, think=think)
        except Exception as exc:
            self.stats.dropped.append(f"{caller.name}: {type(exc).__name__}: {exc}")

    async def live(self, at_least: int, within: float = 120) -> None:
        await async_wait_for(
            lambda: true(self.stats.live >= at_least or self.task.done()),
            timeout=within,
            what=f"{at_least} live calls",
        )
        assert not self.task.done(), self.stats.dropped

    async def talking(self, within: float = 120) -> None:
        """Every caller completes two more turns from now on (wherever its call now lives)."""
        self.stats.mark()
        try:
            await async_wait_for(
                lambda: true(min(self.stats.turns_in_window.values()) >= 2 or self.task.done()),
                timeout=within,
                what="every caller talking",
            )
        except AssertionError as exc:
            silent = [c for c, n in self.stats.turns_in_window.items() if n < 2]
            raise AssertionError(f"{exc}: silent callers {silent}; dropped {self.stats.dropped}") from None
        assert not self.task.done(), f"the callers stopped: {self.task}; dropped {self.stats.dropped}"

    async def finish(self, within: float = 240) -> Stats:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, within)
        finally:
            await self.channels.close()
        return self.stats

    async def abort(self) -> None:
        self.stop.set()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.channels.close()

    async def __aenter__(self) -> Calls:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:  # a failed step: stop the callers rather than wait for them
            await self.abort()
