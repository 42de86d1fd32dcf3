"""The pod keeps its start-up heap out of the garbage collector's full passes."""

from __future__ import annotations

import subprocess
import sys

# In a child process: freezing is process-wide and must not leak into the test session.
CHECK = """
import gc
from prometheus_client import REGISTRY
import agent_pod.runtime  # the pod's imports: gRPC, aiortc, protobuf, providers
from agent_pod.gc_pauses import PauseMeter, freeze_startup_heap

tracked_before = len(gc.get_objects())
frozen = freeze_startup_heap()
tracked_after = len(gc.get_objects())
PauseMeter().install()
gc.collect()
pauses = REGISTRY.get_sample_value("voicefleet_gc_pause_seconds_count", {"generation": "2"})
print(tracked_before, frozen, tracked_after, pauses)
"""


def test_start_up_heap_is_frozen_and_pauses_are_measured():
    run = [sys.executable, "-c", CHECK]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120)
    tracked_before, frozen, tracked_after, pauses = out.stdout.split()
    assert int(frozen) > 50_000, "the pod's imports leave a large permanent heap"
    # A full collection now walks a sliver of what it walked before.
    assert int(tracked_after) < int(tracked_before) / 20
    assert float(pauses) == 1.0
