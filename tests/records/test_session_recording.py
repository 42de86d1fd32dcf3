"""A real session records its call: the right channel holds each turn's played audio where its
TurnRecord says, and the session's recording info names the file and its hash."""

from __future__ import annotations

import asyncio
import hashlib
import time
import wave
from pathlib import Path

import numpy as np

from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from agent_pod.records.storage import RecordingStore
from tests.pipeline.harness import make_config
from tests.support.wait import Timeout

OUT_RATE = 24000


async def test_turn_offsets_point_at_the_played_audio(tmp_path: Path) -> None:
    config = make_config()  # the scripted LLM answers "Hello! How can I help you today?"
    config = config.model_copy(update={"recording": config.recording.model_copy(update={"enabled": True})})
    store = RecordingStore(config.recording, "desk", tmp_path)
    session = AgentSession(
        session_id="rec-1",
        config=config,
        providers=build_providers(config.pipeline),
        output_sample_rate=OUT_RATE,
        recordings=store,
    )
    await session.start()
    assert session.recording is not None
    started = time.monotonic()
    tick = 0

    async def play(seconds: float) -> None:  # the transport's playout clock: a pull every 20 ms
        nonlocal tick
        end = tick + int(seconds * 50)
        while tick < end:
            session.pull_audio()
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * 0.02 - time.monotonic()))

    await play(0.5)
    session.push_text("hello")
    deadline = time.monotonic() + 20
    while not session.turn_records:
        await play(0.2)
        if time.monotonic() > deadline:
            raise Timeout("the turn never finished")
    await play(0.3)
    await session.close("client_ended")
    record = session.turn_records[0]
    info = session.recording_info
    assert info is not None and record.audio_start_ms is not None and record.audio_end_ms is not None
    assert 500 <= record.audio_start_ms < 5000
    assert abs((record.audio_end_ms - record.audio_start_ms) - record.played_ms) <= 20
    body = await asyncio.to_thread(Path(info.location).read_bytes)
    assert hashlib.sha256(body).hexdigest() == info.sha256
    with wave.open(info.location) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    right = np.abs(audio[:, 1].astype(np.int32))
    loud = np.flatnonzero(right > 1000)
    assert loud.size
    # The agent's voice starts and ends where the record says (within a frame and the resampler's delay).
    assert abs(loud[0] * 1000 / rate - record.audio_start_ms) <= 30
    assert loud[-1] * 1000 / rate <= record.audio_end_ms + 30
    assert abs(info.duration_ms - tick * 20) <= 300
