"""Endless caller speech (or noise) never makes a session hold more than maxUtteranceSeconds of audio:
heard as turns of that length, or, while the agent talks on, only its newest part is kept."""

from __future__ import annotations

import asyncio

from agent_pod import pipeline_metrics
from agent_pod.pipeline.session import AgentSession
from tests.pipeline.harness import CALLER_RATE, Harness, make_config
from tests.support.audio import frames
from tests.support.pod import tone

SECOND = CALLER_RATE * 2  # bytes of one second of caller audio; the energy VAD runs at the caller's rate


def limited(seconds: float, barge_in: bool = True):
    config = make_config(vad="energy", min_speech_ms=100, min_silence_ms=300)
    config.session.limits.max_utterance_seconds = seconds
    config.pipeline.barge_in.enabled = barge_in
    return config


async def speak(h: Harness, seconds: float, stt_keeps_up: bool = True) -> int:
    """Speak without pause; the most audio the session held meanwhile. Between frames the loop runs the
    STT a few passes (it keeps up, as in a pod), or not at all (an STT stuck behind the caller)."""
    most = 0
    session: AgentSession = h.session
    for frame in frames(tone(CALLER_RATE, seconds), CALLER_RATE):
        h.step(frame)
        most = max(most, session.held_audio_bytes)
        for _ in range(5 if stt_keeps_up else 0):
            await asyncio.sleep(0)  # a pass of the loop, as between two frames in a pod
    return most


async def test_endless_speech_is_heard_as_turns_of_at_most_the_limit():
    async with Harness(limited(1.0)) as h:
        most = await speak(h, 5.0)
        await h.until(lambda: len([e for e in h.of_type("user_transcript") if e.final]) >= 4, what="4 turns")
    assert most <= 1.2 * SECOND, most


async def test_speech_over_an_agent_that_will_not_be_interrupted_keeps_only_its_newest_part():
    async with Harness(limited(1.0, barge_in=False)) as h:
        h.session.push_text("tell me a story")
        await h.until(lambda: h.session.speaking and h.session.queued_audio_ms >= 3000, what="the story")
        most = await speak(h, 4.0)
        assert h.session.speaking and not h.of_type("interruption")
    assert SECOND * 0.9 <= most <= 1.2 * SECOND, most


async def test_an_stt_that_falls_behind_loses_the_newest_audio_instead_of_piling_it_up():
    dropped = pipeline_metrics.STT_BACKLOG_DROPPED_TOTAL._value.get()
    async with Harness(limited(1.0)) as h:
        most = await speak(h, 4.0, stt_keeps_up=False)
    assert most <= 1.1 * SECOND, most
    assert pipeline_metrics.STT_BACKLOG_DROPPED_TOTAL._value.get() >= dropped + 100  # ~3 s of windows
