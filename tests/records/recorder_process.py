"""A call being recorded in real time, in a process of its own (test_flush_kill SIGKILLs it).

Prints the call's elapsed seconds after every flush, then goes on until killed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from agent_pod.config import RecordingSpec
from agent_pod.records.recording import CallRecording


async def main(path: Path) -> None:
    spec = RecordingSpec(enabled=True, sample_rate=8000, flush_seconds=0.5)
    rec = CallRecording("killed", spec, path, str(path))
    flush = rec.flush

    async def flush_and_report(final: bool = False) -> None:
        await flush(final)
        print(f"{time.monotonic() - started:.3f}", flush=True)

    rec.flush = flush_and_report  # type: ignore[method-assign]
    started = time.monotonic()
    await rec.start()
    tone = (np.sin(np.arange(160) * 2 * np.pi * 300 / 8000) * 8000).astype("<i2").tobytes()
    tick = 0
    while True:
        rec.caller(tone, 8000)
        rec.agent(tone, 8000)
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * 0.02 - time.monotonic()))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
