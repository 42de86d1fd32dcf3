"""Fallback chains hand over without dropping the session; idle timeout and max duration end it."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from tests.pipeline.harness import Harness, make_config
from tests.support.audio import espeak_utterance, silence
from tests.support.net import free_port


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_llm_connection_refused_falls_back_to_next(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = make_config()
    config.pipeline.llm.provider = "openai"
    config.pipeline.llm.base_url = dead
    config.pipeline.llm.timeout_seconds = 5
    config.pipeline.llm.fallback = [config.pipeline.llm.model_validate({"provider": "scripted"})]
    before = _count(
        "voicefleet_provider_fallbacks_total", stage="llm", from_provider="openai", to_provider="scripted"
    )
    async with Harness(config) as h:
        h.session.push_text("hello")
        await h.drain_agent()
        assert h.session.conversation.messages[-1].content == "Hello! How can I help you today?"
        assert not h.of_type("error") and not h.session.ended
    after = _count(
        "voicefleet_provider_fallbacks_total", stage="llm", from_provider="openai", to_provider="scripted"
    )
    assert after == before + 1


async def test_llm_too_slow_to_first_token_falls_back():
    config = make_config(
        llm_options={"first_token_delay_ms": "30000"},
        llm_fallback=[
            {"provider": "scripted", "options": {"rules": '[{"match": ".", "reply": "Backup here."}]'}}
        ],
    )
    config.pipeline.llm.timeout_seconds = 0.3
    before = _count("voicefleet_provider_errors_total", stage="llm", provider="scripted")
    async with Harness(config) as h:
        h.session.push_text("hello")
        await h.drain_agent()
        assert h.session.conversation.messages[-1].content == "Backup here."
    assert _count("voicefleet_provider_errors_total", stage="llm", provider="scripted") == before + 1


async def test_tts_failure_falls_back_and_session_survives():
    # espeak-ng really fails on an unknown voice; synthetic speaks instead.
    config = make_config(tts="espeak", voice="zzzvoice", tts_fallback=[{"provider": "synthetic"}])
    async with Harness(config) as h:
        h.session.push_text("hello")
        played = await h.drain_agent()
        assert played > 0
        assert h.of_type("agent_text")[-1].played_text == "Hello! How can I help you today?"
    assert _count(
        "voicefleet_provider_fallbacks_total", stage="tts", from_provider="espeak", to_provider="synthetic"
    )


async def test_stt_failure_falls_back_and_hears_the_utterance():
    config = make_config(
        vad="webrtc",
        stt="synthetic",
        stt_fallback=[{"provider": "synthetic", "options": {"transcript": "from the backup"}}],
    )
    config.pipeline.stt.options["fail"] = "true"
    async with Harness(config) as h:
        await h.play_caller(espeak_utterance("hello there"))
        await h.until(lambda: h.of_type("user_transcript"), what="transcript")
        await h.drain_agent()
        assert h.of_type("user_transcript")[0].text == "from the backup"
        assert h.session.conversation.messages[-1].content == "You said: from the backup."


async def test_every_llm_failing_reports_error_and_session_goes_on():
    config = make_config(llm_options={"fail": "true"})
    async with Harness(config) as h:
        h.session.push_text("hello")
        await h.until(lambda: h.of_type("error"), what="error event")
        await h.drain_agent()
        error = h.of_type("error")[0]
        assert error.code == "PROVIDER_FAILED" and not error.fatal
        assert not h.session.ended
        # The user turn is kept; no assistant text was played, so none is recorded.
        assert [m.role for m in h.session.conversation.messages] == ["user"]
        h.session.push_text("still there?")
        await h.drain_agent()
        assert [m.role for m in h.session.conversation.messages] == ["user", "user"]


def _short_limits(config, idle: float = 60, max_duration: float = 3600):
    # Below the CRD minimums on purpose, to keep the test short (model_copy skips validation).
    config.session = config.session.model_copy(
        update={"idle_timeout_seconds": idle, "max_duration_seconds": max_duration}
    )
    return config


async def test_idle_timeout_ends_the_session():
    async with Harness(_short_limits(make_config(), idle=0.4)) as h:
        h.session.push_text("hello")
        await h.drain_agent()
        ended = await h.until(lambda: h.of_type("session_ended"), within=10, what="idle end")
        assert ended[0].reason == "idle_timeout"
        assert h.session.ended and h.session.end_reason == "idle_timeout"
        assert h.session.conversation.turns == 1


async def test_caller_speech_keeps_the_session_alive():
    idle = 0.6
    async with Harness(_short_limits(make_config(vad="webrtc"), idle=idle)) as h:
        speech = espeak_utterance("hello") + silence(500)
        loop = asyncio.get_running_loop()
        start, turns = loop.time(), 0
        while loop.time() - start < 3 * idle:  # keep talking for longer than the idle timeout
            await h.play_caller(speech, then_silence_ms=0)
            await h.drain_agent()
            turns += 1
        assert not h.session.ended, "ended although the caller kept speaking"
        assert len([e for e in h.of_type("user_transcript") if e.final]) == turns


async def test_max_duration_ends_the_session_mid_turn():
    async with Harness(_short_limits(make_config(), max_duration=2.0)) as h:
        h.session.push_text("tell me a story")
        await h.until(lambda: h.session.queued_audio_ms > 1000, what="audio")
        for _ in range(40):
            assert h.step() is not None
        ended = await h.until(lambda: h.of_type("session_ended"), within=10, what="max duration end")
        assert ended[0].reason == "max_duration"
        # The turn cut by the end is recorded once, with what was played.
        msgs = h.session.conversation.messages
        assert [m.role for m in msgs] == ["user", "assistant"] and msgs[1].interrupted
        assert msgs[1].content and "Once upon a time".startswith(msgs[1].content.rstrip(","))
        assert h.snapshots[-1].messages == msgs
        assert h.step() is None


async def test_stt_missing_its_deadline_falls_back_with_the_whole_utterance():
    config = make_config(
        vad="webrtc",
        stt="synthetic",
        stt_fallback=[{"provider": "synthetic", "options": {"transcript": "heard by the backup"}}],
    )
    config.pipeline.stt.options["delay_ms"] = "30000"
    config.pipeline.stt.timeout_seconds = 0.3
    async with Harness(config) as h:
        await h.play_caller(espeak_utterance("hello there"))
        await h.until(lambda: h.of_type("user_transcript"), what="transcript")
        await h.drain_agent()
        assert h.of_type("user_transcript")[0].text == "heard by the backup"
        assert h.of_type("turn_metrics")[0].stt_final_ms >= 300


class _BrokenVAD:
    """A VAD whose model breaks after a few windows (fault injection)."""

    name = "broken"
    sample_rate = 16000
    frame_samples = 320

    def __init__(self) -> None:
        self.windows = 0

    def speech_probability(self, frame: bytes) -> float:
        self.windows += 1
        if self.windows > 3:
            raise RuntimeError("model crashed")
        return 0.0

    def reset(self) -> None:
        self.windows = 0


async def test_vad_failure_moves_to_the_next_vad():
    from agent_pod.providers.base import Providers
    from agent_pod.providers.registry import build_providers
    from agent_pod.providers.vad_webrtc import WebRTCVAD

    config = make_config(vad="webrtc", transcript="still heard")
    built = build_providers(config.pipeline)
    providers = Providers(vad=[_BrokenVAD, WebRTCVAD], stt=built.stt, llm=built.llm, tts=built.tts)
    async with Harness(config, providers=providers) as h:
        await h.play_caller(silence(200) + espeak_utterance("hello there"))
        await h.until(lambda: h.of_type("user_transcript"), what="transcript")
        assert h.of_type("user_transcript")[0].text == "still heard"
    assert _count(
        "voicefleet_provider_fallbacks_total", stage="vad", from_provider="broken", to_provider="webrtc"
    )
