"""Barge-in with real audio: espeak-ng speech injected into the caller stream while the agent speaks.

Time is simulated by 20 ms frames: every step pushes one caller frame and pulls
one agent frame, as a transport does on each playout tick.
"""

from __future__ import annotations

import pytest

from agent_pod.providers.scripted_llm import STORY
from tests.pipeline.harness import FRAME_MS, Harness, make_config
from tests.support.audio import clicks, espeak_utterance, frames, silence, trim_silence, white_noise

VOCABULARY = ["tell me a story", "stop", "wait a moment please", "hello"]


async def _start_story(h: Harness, lead_frames: int = 50) -> None:
    """Ask for the long answer and play its first second with a silent caller."""
    h.session.push_text("tell me a story")
    await h.until(lambda: h.session.queued_audio_ms >= 3000, what="story audio synthesized")
    for _ in range(lead_frames):
        assert h.step(silence(FRAME_MS)) is not None


def _assistant_messages(h: Harness, turn_id: str):
    return [m for m in h.session.conversation.messages if m.role == "assistant" and m.turn_id == turn_id]


@pytest.mark.parametrize("vad", ["silero", "webrtc"])
async def test_caller_speech_stops_agent_within_a_frame(vad):
    barge_in_ms = 300
    config = make_config(
        vad=vad, stt="pocketsphinx", tts="espeak", vocabulary=VOCABULARY, barge_in_ms=barge_in_ms
    )
    async with Harness(config) as h:
        await _start_story(h)
        played_before = sum(f is not None for f in h.pulled)
        speech = frames(trim_silence(espeak_utterance("wait a moment please")))
        stopped_at = None
        for i, caller_frame in enumerate(speech):
            if h.step(caller_frame) is None:
                stopped_at = i
                break
        assert stopped_at is not None, "agent kept talking through the caller's speech"
        # Stopped after barge_in_ms of speech plus at most a few VAD windows, never before.
        assert (barge_in_ms - 40) / FRAME_MS <= stopped_at <= (barge_in_ms + 160) / FRAME_MS
        # And it stays silent: every queued frame was flushed.
        for caller_frame in speech[stopped_at + 1 : stopped_at + 5]:
            assert h.step(caller_frame) is None

        interruption = (await h.until(lambda: h.of_type("interruption"), what="interruption"))[0]
        assert interruption.turn_id == "turn-1"
        # The interruption point is exactly what was pulled: no frame went out after the decision.
        assert interruption.played_ms == (played_before + stopped_at) * FRAME_MS
        assert interruption.played_text and STORY.startswith(interruption.played_text.rstrip(".,"))
        assert len(interruption.played_text) < len(STORY) / 2

        # The caller finishes the sentence; it becomes the next turn.
        await h.play_caller(b"".join(speech[stopped_at + 5 :]), then_silence_ms=800)
        await h.until(lambda: len([e for e in h.of_type("user_transcript") if e.final]) == 2, what="2nd turn")
        await h.drain_agent()

        story_turn = _assistant_messages(h, "turn-1")
        assert len(story_turn) == 1, "the interrupted turn must be saved exactly once"
        assert story_turn[0].content == interruption.played_text
        assert story_turn[0].interrupted
        final = [e for e in h.of_type("agent_text") if e.final and e.turn_id == "turn-1"]
        assert len(final) == 1 and final[0].interrupted and final[0].played_text == interruption.played_text
        assert final[0].text != final[0].played_text
        user_turns = [m.content for m in h.session.conversation.messages if m.role == "user"]
        assert user_turns == ["tell me a story", "wait a moment please"]
        assert h.session.conversation.messages[-1].content == "You said: wait a moment please."
        assert len(h.of_type("interruption")) == 1
        record = h.session.turn_records[0]
        assert record.interrupted and record.played_text == interruption.played_text
        assert record.sent_to_tts.startswith(record.played_text.rstrip(".,"))


@pytest.mark.parametrize("vad", ["silero", "webrtc"])
@pytest.mark.parametrize(
    "noise",
    [
        pytest.param(white_noise(150, level=0.3), id="white-noise-150ms"),
        pytest.param(clicks(150, every_ms=100), id="clicks-150ms"),
        pytest.param(trim_silence(espeak_utterance("ok"))[: 16000 * 2 * 150 // 1000], id="speech-150ms"),
    ],
)
async def test_short_noise_does_not_interrupt(vad, noise):
    config = make_config(vad=vad, stt="synthetic", tts="synthetic", barge_in_ms=300)
    async with Harness(config) as h:
        await _start_story(h, lead_frames=25)
        for caller_frame in frames(noise + silence(600)):
            assert h.step(caller_frame) is not None, "noise shorter than min speech stopped the agent"
        await h.drain_agent()
        assert not h.of_type("interruption")
        final = h.of_type("agent_text")[-1]
        assert final.final and not final.interrupted and final.played_text == STORY
        assert [m.role for m in h.session.conversation.messages] == ["user", "assistant"]


async def test_silero_ignores_a_long_click_train():
    # webrtcvad's GMM scores clicks as speech (with hangover), so a long click train would
    # interrupt with it; Silero, the default, does not hear speech in them.
    config = make_config(vad="silero", stt="synthetic", tts="synthetic", barge_in_ms=300)
    async with Harness(config) as h:
        await _start_story(h, lead_frames=5)
        for caller_frame in frames(clicks(2000, every_ms=100)):
            assert h.step(caller_frame) is not None
        assert h.session.speaking and not h.of_type("interruption")


async def test_barge_in_disabled_keeps_talking():
    config = make_config(vad="webrtc", tts="synthetic")
    config.pipeline.barge_in.enabled = False
    async with Harness(config) as h:
        await _start_story(h, lead_frames=10)
        for caller_frame in frames(trim_silence(espeak_utterance("wait a moment please")) + silence(600)):
            assert h.step(caller_frame) is not None
        await h.drain_agent()
        assert not h.of_type("interruption")
        # Speech over the agent with barge-in off is not taken as a turn.
        assert [e.text for e in h.of_type("user_transcript") if e.final] == ["tell me a story"]


async def test_interrupting_before_any_audio_keeps_history_valid():
    # The LLM is slow: the caller talks again before the agent has said anything.
    config = make_config(vad="webrtc", tts="synthetic", llm_options={"first_token_delay_ms": "30000"})
    async with Harness(config) as h:
        h.session.push_text("tell me a story")
        await h.until(lambda: h.session.speaking, what="turn started")
        for caller_frame in frames(trim_silence(espeak_utterance("hello")) + silence(100)):
            h.step(caller_frame)
        interruption = (await h.until(lambda: h.of_type("interruption"), what="interruption"))[0]
        assert interruption.played_text == "" and interruption.played_ms == 0
        await h.until(lambda: not h.session.speaking, what="turn finished")
        # Nothing was played: no assistant message, the user message stays.
        assert [m.role for m in h.session.conversation.messages] == ["user"]
        assert h.session.conversation.turns == 1
