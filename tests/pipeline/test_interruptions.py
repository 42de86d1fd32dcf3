"""Cancel phrases, backchannels and false interruptions through the real pipeline.

espeak-ng speech and numpy noise go into the caller stream while the agent tells a long story;
silero or webrtcvad and pocketsphinx hear it. Time is simulated by 20 ms frames (harness.py).
"""

from __future__ import annotations

import pytest

from agent_pod import pipeline_metrics
from agent_pod.providers.scripted_llm import STORY
from tests.pipeline.harness import FRAME_MS, Harness, make_config
from tests.support.audio import espeak_utterance, frames, silence, trim_silence, white_noise

VOCABULARY = ["tell me a story", "wait a moment please", "hello"]


def _config(**kwargs):
    config = make_config(**kwargs)
    # The compliance re-transcription of a whole story is seconds of CPU: not what these tests are about.
    config.pipeline.compliance.audit = False
    return config


async def _start_story(h: Harness, lead_frames: int = 50) -> None:
    h.session.push_text("tell me a story")
    await h.until(lambda: h.session.queued_audio_ms >= 3000, what="story audio synthesized")
    for _ in range(lead_frames):
        assert h.step(silence(FRAME_MS)) is not None


def _played(h: Harness) -> bytes:
    return b"".join(f for f in h.pulled if f is not None)


def _final_user_texts(h: Harness) -> list[str]:
    return [e.text for e in h.of_type("user_transcript") if e.final]


async def _reference_audio(config) -> bytes:
    """The story as played to a silent caller."""
    async with Harness(config) as h:
        await _start_story(h)
        await h.drain_agent()
        return _played(h)


def _pauses(outcome: str) -> float:
    return pipeline_metrics.AGENT_PAUSES_TOTAL.labels(outcome)._value.get()


async def _hear_out(h: Harness, pcm: bytes) -> int:
    """The caller's sound then silence until the session has judged it (the STT runs in wall time);
    returns how many agent frames were held back meanwhile."""
    held = sum(h.step(f) is None for f in frames(pcm + silence(600)))
    await h.until(lambda: not h.session.judging_overlap, what="judged")
    return held


@pytest.mark.parametrize("vad", ["silero", "webrtc"])
async def test_short_stop_cuts_the_agent_off(vad):
    # espeak-ng's "stop" has ~400 ms of voice: below a 600 ms barge-in threshold.
    config = _config(vad=vad, stt="pocketsphinx", vocabulary=VOCABULARY, barge_in_ms=600)
    async with Harness(config) as h:
        await _start_story(h)
        stop = trim_silence(espeak_utterance("stop"))
        for caller_frame in frames(stop):
            assert h.step(caller_frame) is not None, "a sound below minSpeechMs paused the agent"
        for caller_frame in frames(silence(600)):
            h.step(caller_frame)
        interruption = (await h.until(lambda: h.of_type("interruption"), what="interruption"))[0]
        assert h.step() is None and not h.session.queued_audio_ms
        await h.until(lambda: not h.session.speaking, what="turn over")
        assert interruption.played_ms == len(_played(h)) // (2 * 24) // FRAME_MS * FRAME_MS
        assert STORY.startswith(interruption.played_text.rstrip(".,")) and interruption.played_text
        # A cancel phrase is no turn: the agent stops and listens.
        assert _final_user_texts(h) == ["tell me a story"]
        assert [m.role for m in h.session.conversation.messages] == ["user", "assistant"]
        assert h.session.conversation.messages[-1].interrupted
        assert h.session.conversation.messages[-1].content == interruption.played_text


@pytest.mark.parametrize(
    ("word", "barge_in_ms", "pauses"),
    [("right", 300, True), ("okay", 300, True), ("yeah", 300, True), ("okay", 600, False)],
)
async def test_backchannel_neither_interrupts_nor_adds_a_turn(word, barge_in_ms, pauses):
    config = _config(vad="silero", stt="pocketsphinx", vocabulary=VOCABULARY, barge_in_ms=barge_in_ms)
    reference = await _reference_audio(config)
    resumed = _pauses("resumed")
    async with Harness(config) as h:
        await _start_story(h)
        held = await _hear_out(h, trim_silence(espeak_utterance(word)))
        assert (held > 0) is pauses
        await h.drain_agent()
        assert not h.of_type("interruption")
        final = [e for e in h.of_type("agent_text") if e.final]
        assert len(final) == 1 and not final[0].interrupted and final[0].played_text == STORY
        assert _final_user_texts(h) == ["tell me a story"]
        assert [m.role for m in h.session.conversation.messages] == ["user", "assistant"]
        # Every frame played exactly once, in order, pause or not.
        assert _played(h) == reference
    assert _pauses("resumed") - resumed == (1 if pauses else 0)


async def test_noise_burst_pauses_then_resumes_the_same_sentence():
    # webrtcvad hears loud white noise as voice: 500 ms of it passes the 300 ms barge-in threshold.
    # (The synthetic TTS is bit-exact from run to run, so the audio can be compared with a reference.)
    config = _config(vad="webrtc", stt="pocketsphinx", vocabulary=VOCABULARY)
    reference = await _reference_audio(config)
    async with Harness(config) as h:
        await _start_story(h)
        before = len(_played(h))
        noise = white_noise(500, level=0.3)
        caller = frames(noise + silence(600))
        out = [h.step(f) for f in caller]
        paused_at = out.index(None)
        assert paused_at * FRAME_MS <= 300 + 100, "the agent did not pause at minSpeechMs of voice"
        await h.until(lambda: not h.session.judging_overlap, what="judged")
        # Paused frames were not played: the count stopped at the pause.
        assert len(_played(h)) == before + paused_at * 2 * 480
        await h.drain_agent()
        assert not h.of_type("interruption")
        final = [e for e in h.of_type("agent_text") if e.final]
        assert len(final) == 1 and not final[0].interrupted and final[0].played_text == STORY
        assert h.session.turn_records[0].played_text == STORY
        assert _played(h) == reference, "audio lost or repeated around the pause"
        assert _final_user_texts(h) == ["tell me a story"]


async def test_pause_with_nothing_to_act_on_resumes_after_the_timeout():
    # The STT hears nothing in a noise that goes on: the timeout resumes the agent under it.
    config = _config(vad="webrtc", stt="synthetic", transcript="")
    config.pipeline.barge_in.false_interruption_timeout_ms = 300
    async with Harness(config) as h:
        await _start_story(h)
        noise = frames(white_noise(20_000, level=0.3))
        out = [h.step(f) for f in noise[:30]]
        assert out[-1] is None, "the agent did not pause"
        resumed = await h.until(
            lambda: h.step(noise[len(h.pulled) % len(noise)]) is not None, within=20, what="resumed"
        )
        assert resumed and h.session.speaking and not h.of_type("interruption")


@pytest.mark.parametrize(
    ("said", "turn"), [("wait a moment please", "wait a moment please"), ("stop stop", None)]
)
async def test_speech_and_long_cancel_still_interrupt(said, turn):
    config = _config(vad="silero", stt="pocketsphinx", vocabulary=VOCABULARY)
    interrupted = _pauses("interrupted")
    async with Harness(config) as h:
        await _start_story(h)
        speech = frames(trim_silence(espeak_utterance(said)))
        out = [h.step(f) for f in speech]
        stopped_at = out.index(None)
        # Paused at 300 ms of voice (the "s" of "stop" is not voice to the VAD: up to ~200 ms more).
        assert (300 - 40) / FRAME_MS <= stopped_at <= (300 + 300) / FRAME_MS
        await h.play_caller(b"", then_silence_ms=800)
        interruption = (await h.until(lambda: h.of_type("interruption"), what="interruption"))[0]
        # The pause is where the caller's audio stopped: nothing after it counts as played.
        assert interruption.played_ms == (50 + stopped_at) * FRAME_MS
        expected = ["tell me a story", turn] if turn else ["tell me a story"]
        await h.until(lambda: len(_final_user_texts(h)) == len(expected), what="transcripts")
        await h.drain_agent()
        assert _final_user_texts(h) == expected
        story = [
            m for m in h.session.conversation.messages if m.turn_id == "turn-1" and m.role == "assistant"
        ]
        assert len(story) == 1 and story[0].interrupted and story[0].content == interruption.played_text
    assert _pauses("interrupted") - interrupted == 1


async def test_without_resume_speech_stops_the_agent_at_once_as_before():
    # No transcript is needed (the synthetic STT gives none before the end): the flush is immediate.
    config = _config(vad="silero", stt="synthetic", transcript="okay")
    config.pipeline.barge_in.resume_false_interruptions = False
    async with Harness(config) as h:
        await _start_story(h)
        speech = frames(trim_silence(espeak_utterance("wait a moment please")))
        out = [h.step(f) for f in speech[:25]]
        stopped_at = out.index(None)
        interruption = (await h.until(lambda: h.of_type("interruption"), within=10, what="interruption"))[0]
        assert interruption.played_ms == (50 + stopped_at) * FRAME_MS
        assert not h.session.queued_audio_ms  # flushed, not paused
        # What was said is a turn, even a backchannel: there is nothing to resume.
        await h.play_caller(b"".join(speech[25:]), then_silence_ms=800)
        await h.until(lambda: len(_final_user_texts(h)) == 2, what="second turn")
        assert _final_user_texts(h) == ["tell me a story", "okay"]
        await h.drain_agent()
