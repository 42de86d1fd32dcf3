"""Where a chunk of a live audio stream lies on the call's clock.

Chunks arrive with network jitter, in bursts, and some never arrive. Placing each one at its arrival
time would scatter a continuous stream; placing them back to back would let every lost packet pull
the rest of the stream earlier. The placer keeps the stream continuous and anchors it to the least
delayed arrival seen recently: a chunk's offset is its arrival minus the stream's length before it;
the smallest offset over a short window is the stream's start on the call's clock (packets are only
ever late, never early). A lost packet raises every later offset, so the window's minimum follows
within ``window`` samples; an offset far above the minimum (a pause in a stream that sends nothing
while silent, or many lost packets) restarts the anchor at once. Times are in samples.
"""

from __future__ import annotations

from collections import deque


class ArrivalPlacer:
    def __init__(self, window: int, discontinuity: int) -> None:
        self.window = window
        self.discontinuity = discontinuity
        self.cursor = 0  # end of what is placed: the next chunk never starts before it
        self._streamed = 0  # samples of the stream since its anchor
        self._offsets: deque[tuple[int, int]] = deque()  # (arrival, offset)

    def place(self, end_at: int, length: int) -> int:
        """The start of a chunk of ``length`` samples whose last sample reached the pod at ``end_at``."""
        offset = end_at - length - self._streamed
        if self._offsets and offset - self._anchor() > self.discontinuity:
            self._offsets.clear()  # a gap longer than any jitter: the stream starts afresh here
            self._streamed = 0
            offset = end_at - length
        while self._offsets and self._offsets[-1][1] >= offset:
            self._offsets.pop()  # monotonic deque: the window's minimum is at its left end
        self._offsets.append((end_at, offset))
        while self._offsets[0][0] < end_at - self.window:
            self._offsets.popleft()
        start = max(self.cursor, self._anchor() + self._streamed)
        self._streamed += length
        self.cursor = start + length
        return start

    def skip_to(self, position: int) -> None:
        """Nothing may be placed before ``position`` any more (it has been written out)."""
        self.cursor = max(self.cursor, position)

    def _anchor(self) -> int:
        return self._offsets[0][1]
