"""AgentSession with zero-latency providers: text turns, audio turns, bad input, lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from agent_pod.audio.pcm import InvalidAudio
from agent_pod.conversation import ChatMessage, Conversation
from agent_pod.pipeline.events import SessionEventAdapter
from agent_pod.providers.scripted_llm import STORY
from tests.pipeline.harness import CALLER_RATE, OUT_RATE, Harness, make_config
from tests.support.audio import espeak_utterance, silence

FRAME_BYTES = OUT_RATE // 50 * 2


async def test_text_turn_plays_answer_and_records_it():
    async with Harness(make_config()) as h:
        h.session.push_text("hello there")
        played = await h.drain_agent()
        assert played > 10  # synthetic TTS: 60 ms per character
        assert all(f is None or len(f) == FRAME_BYTES for f in h.pulled)

        kinds = [e.type for e in h.events]
        assert kinds[0] == "user_transcript"
        assert "turn_metrics" in kinds
        final = h.of_type("agent_text")[-1]
        assert final.final and not final.interrupted
        assert final.played_text == final.text == "Hello! How can I help you today?"
        metrics = h.of_type("turn_metrics")
        assert len(metrics) == 1 and metrics[0].response_latency_ms >= 0

        msgs = h.session.conversation.messages
        assert [(m.role, m.content) for m in msgs] == [
            ("user", "hello there"),
            ("assistant", "Hello! How can I help you today?"),
        ]
        assert h.session.conversation.turns == 1
        assert len(h.snapshots) == 1 and h.snapshots[0].messages == msgs
        assert h.session.conversation.prompt_id == h.session.prompt_id
        # A second turn sees the first in its history and numbers on.
        h.session.push_text("what did I say")
        await h.drain_agent()
        assert h.session.conversation.messages[-1].content == "You said: what did I say."
        assert h.of_type("user_transcript")[-1].turn_id == "turn-2"
        assert len(h.snapshots) == 2


async def test_agent_is_silent_between_turns():
    async with Harness(make_config()) as h:
        assert h.step() is None
        h.session.push_text("hi")
        await h.drain_agent()
        assert h.step() is None
        assert not h.session.speaking


async def test_events_serialise_with_type_discriminator():
    async with Harness(make_config()) as h:
        h.session.push_text("hello")
        await h.drain_agent()
    for event in h.events:
        again = SessionEventAdapter.validate_json(event.model_dump_json())
        assert again == event
    assert h.events[-1].type == "session_ended"
    assert h.events[-1].reason == "client_ended"


async def test_spoken_turn_with_energy_vad_and_synthetic_stt():
    config = make_config(vad="energy", transcript="tell me the weather")
    async with Harness(config) as h:
        await h.play_caller(silence(200) + espeak_utterance("what is the weather like"))
        await h.until(lambda: h.of_type("user_transcript"), what="transcript")
        played = await h.drain_agent()
        assert played > 0
        assert h.of_type("user_transcript")[0].text == "tell me the weather"
        assert h.session.conversation.messages[-1].content == "You said: tell me the weather."
        metric = h.of_type("turn_metrics")[0]
        assert metric.stt_final_ms >= 0 and metric.response_latency_ms > 0


async def test_silence_and_short_noise_make_no_turn():
    async with Harness(make_config(vad="energy")) as h:
        from tests.support.audio import clicks, white_noise

        await h.play_caller(silence(500) + white_noise(100) + silence(300) + clicks(400), then_silence_ms=600)
        await asyncio.sleep(0)
        assert not h.of_type("user_transcript")
        assert not h.session.busy


@pytest.mark.parametrize(
    ("pcm", "rate", "message"),
    [
        (b"\x00" * 321, 16000, "even number of bytes"),
        (b"\x00" * 882, 44100, "unsupported sample rate 44100"),
        (b"\x00" * (16000 * 2 * 5), 16000, "at most 1 s"),
    ],
)
async def test_malformed_audio_is_rejected_and_session_keeps_working(pcm, rate, message):
    async with Harness(make_config()) as h:
        with pytest.raises(InvalidAudio, match=message):
            h.session.push_audio(pcm, rate)
        assert isinstance(InvalidAudio(""), ValueError)
        # Good audio and turns still work afterwards.
        h.session.push_audio(silence(20, 48000), 48000)
        h.session.push_text("hello")
        assert await h.drain_agent() > 0
        assert not h.session.ended


async def test_restored_conversation_is_continued():
    restored = Conversation(
        session_id="test-session",
        prompt_id="old",
        messages=[
            ChatMessage(role="user", content="hello", turn_id="turn-1"),
            ChatMessage(role="assistant", content="Hello!", turn_id="turn-1"),
        ],
        turns=1,
    )
    async with Harness(make_config(), conversation=restored) as h:
        h.session.push_text("again")
        await h.drain_agent()
        conv = h.session.conversation
        assert conv.turns == 2
        assert [m.turn_id for m in conv.messages] == ["turn-1", "turn-1", "turn-2", "turn-2"]
        assert conv.prompt_id == h.session.prompt_id


async def test_long_answer_is_spoken_in_sentence_pieces():
    async with Harness(make_config()) as h:
        h.session.push_text("tell me a story")
        await h.drain_agent(within=120)
        final = h.of_type("agent_text")[-1]
        assert final.played_text == STORY
        partial = [e for e in h.of_type("agent_text") if not e.final]
        assert len(partial) >= 8  # one per sentence at least: TTS started before the LLM finished


async def test_close_is_idempotent_and_ends_events():
    h = Harness(make_config())
    async with h:
        pass
    await h.session.close("again")
    assert h.session.ended and h.session.end_reason == "client_ended"
    assert [e.type for e in h.events].count("session_ended") == 1
    h.session.push_text("ignored after close")
    h.session.push_audio(silence(20), CALLER_RATE)


async def test_close_cancelled_midway_still_ends_the_session():
    """A transport's reader task may be cancelled while it awaits close(): the session must still end,
    and a later close() must return instead of waiting forever."""
    h = Harness(make_config())
    await h.session.start()
    reader = asyncio.create_task(h._read())
    closer = asyncio.create_task(h.session.close("client_ended"))
    await asyncio.sleep(0)  # one loop step: the close has begun
    closer.cancel()
    async with asyncio.timeout(10):
        await h.session.close("again")
        await reader
    assert h.session.ended and h.session.end_reason == "client_ended"
    assert [e.type for e in h.events].count("session_ended") == 1


async def test_empty_transcript_makes_no_turn():
    def finals() -> float:
        return REGISTRY.get_sample_value("voicefleet_stt_final_seconds_count") or 0.0

    before = finals()
    async with Harness(make_config(vad="webrtc", transcript="")) as h:
        await h.play_caller(espeak_utterance("mumble"), then_silence_ms=600)
        await h.until(lambda: finals() > before, what="the utterance's final transcript")
        assert not h.of_type("user_transcript")
        assert h.session.conversation.messages == [] and not h.session.busy
