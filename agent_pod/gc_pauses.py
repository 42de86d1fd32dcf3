"""Garbage-collector pauses in a process that must emit a frame every 20 ms.

A full (generation 2) collection walks every tracked object. After start-up the
pod holds a large, permanent heap (gRPC, aiortc, protobuf descriptors, provider
models) that such a walk re-checks for nothing: measured at 100 live gRPC
sessions, a full collection ran every ~2.5 s, freed nothing and stalled the loop
for ~50 ms, which made the shared playout clock miss a tick. Freezing the
start-up heap moves it out of the collector's view (as CPython's gc.freeze docs
suggest for long-running servers); later garbage is collected as usual.
"""

from __future__ import annotations

import gc
import time

from . import pipeline_metrics


def freeze_startup_heap() -> int:
    """Collect once, then exclude every surviving object from future collections; returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseMeter:
    """Observes each collection's duration by generation (voicefleet_gc_pause_seconds)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._observe = [pipeline_metrics.GC_PAUSE_SECONDS.labels(str(g)).observe for g in range(3)]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._observe[info["generation"]](time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
