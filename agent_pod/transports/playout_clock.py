"""The pod's playout clock: one 20 ms tick shared by every session's audio output.

One timer for the whole pod instead of one per session keeps wakeups (and
asyncio overhead) constant as sessions are added. Ticks are scheduled against
absolute monotonic deadlines, so lateness never accumulates into drift; when
the loop falls more than a frame behind, the missed ticks are not fired one by
one: the tick index jumps, and the consumer decides how many frames to make
good (see SessionHub).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from .. import pipeline_metrics


class PlayoutClock:
    def __init__(self, frame_ms: int = 20) -> None:
        self.frame_ms = frame_ms
        self.period = frame_ms / 1000.0
        self._task: asyncio.Task[None] | None = None
        self._next: asyncio.Future[int] | None = None
        self._index = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._next = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name="playout-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._next is not None and not self._next.done():
            self._next.cancel()

    async def tick(self) -> int:
        """Wait for the next tick and return its index. Raises RuntimeError when the clock is not running."""
        if self._next is None or not self.running:
            raise RuntimeError("PlayoutClock is not running")
        # shield: one waiter being cancelled must not cancel the tick for everyone else.
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        while True:
            self._index += 1
            deadline = start + self._index * self.period
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            lateness = now - deadline
            pipeline_metrics.OUTPUT_FRAME_LATENESS_SECONDS.observe(lateness)
            if lateness > self.period:
                # Skip the ticks we slept through; the next one is in the future again.
                self._index += int(lateness / self.period)
            fut, self._next = self._next, loop.create_future()
            if fut is not None and not fut.done():
                fut.set_result(self._index)
