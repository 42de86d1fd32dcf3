"""The offline pipeline end to end on real speech: VAD -> pocketsphinx -> scripted LLM -> espeak-ng,
with the compliance re-transcription of what was played."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import ComplianceSpec
from agent_pod.pipeline.compliance import Auditor, TurnRecord, word_error_rate
from agent_pod.pipeline.recorder import PipelineRecorder
from agent_pod.sessions.revision_stats import RevisionTally
from tests.pipeline.harness import OUT_RATE, Harness, make_config
from tests.support.audio import espeak_utterance, silence

VOCABULARY = ["what is the weather like", "book a table for two tonight", "tell me a story", "hello", "stop"]


@pytest.mark.parametrize("vad", ["silero", "webrtc"])
async def test_spoken_question_gets_a_spoken_answer(vad):
    config = make_config(vad=vad, stt="pocketsphinx", tts="espeak", vocabulary=VOCABULARY)
    async with Harness(config) as h:
        await h.play_caller(silence(300) + espeak_utterance("what is the weather like"))
        await h.until(lambda: [e for e in h.of_type("user_transcript") if e.final], what="final transcript")
        played = await h.drain_agent()
        assert h.of_type("user_transcript")[-1].text == "what is the weather like"
        partials = [e for e in h.of_type("user_transcript") if not e.final]
        assert partials, "pocketsphinx streams partial transcripts while the caller speaks"
        assert played * 20 > 1000  # over a second of espeak-ng speech
        final = h.of_type("agent_text")[-1]
        assert final.played_text == "You said: what is the weather like." and not final.interrupted
        metrics = h.of_type("turn_metrics")[0]
        assert (
            metrics.response_latency_ms > 0 and metrics.tts_first_audio_ms > 0 and metrics.stt_final_ms >= 0
        )

        await h.session.wait_audits()
        [record] = h.session.turn_records
        assert record.sent_to_tts == record.played_text == "You said: what is the weather like."
        assert record.audit == "done"
        # The forced alignment against the played text finds every word in the audio; the open
        # re-transcription is only made where needed (retranscribe "needed", the default).
        assert record.method == "align" and record.divergent_words == [] and not record.flagged
        assert record.retranscript is None and record.divergence is None


async def test_two_spoken_turns_in_a_row():
    config = make_config(vad="silero", stt="pocketsphinx", tts="espeak", vocabulary=VOCABULARY)
    async with Harness(config) as h:
        for phrase in ["hello", "book a table for two tonight"]:
            await h.play_caller(silence(200) + espeak_utterance(phrase))
            await h.until(lambda p=phrase: any(e.final and e.text == p for e in h.of_type("user_transcript")))
            await h.drain_agent()
        contents = [(m.role, m.content) for m in h.session.conversation.messages]
        assert contents == [
            ("user", "hello"),
            ("assistant", "Hello! How can I help you today?"),
            ("user", "book a table for two tonight"),
            ("assistant", "You said: book a table for two tonight."),
        ]


async def test_divergent_record_is_flagged():
    """The audit compares the audio with the recorded text: audio that says something else is flagged."""
    audio = espeak_utterance("what is the weather like", rate=OUT_RATE)
    before = REGISTRY.get_sample_value("voicefleet_transcript_divergence_flagged_total") or 0.0
    tally = RevisionTally()
    auditor = Auditor(enabled=True, session_id="audit-test", recorder=PipelineRecorder(tally))

    honest = TurnRecord(
        turn_id="t1",
        sent_to_tts="x",
        played_text="what is the weather like",
        played_ms=1500,
        interrupted=False,
    )
    await auditor.audit(honest, audio, OUT_RATE)
    assert honest.audit == "done" and not honest.flagged and honest.retranscript is None
    assert honest.method == "align" and honest.divergent_words == []

    lying = TurnRecord(
        turn_id="t2",
        sent_to_tts="x",
        played_text="your order of three hundred pizzas has been confirmed and charged",
        played_ms=1500,
        interrupted=False,
    )
    await auditor.audit(lying, audio, OUT_RATE)
    assert lying.flagged and lying.method == "align" and {"pizzas", "confirmed"} <= set(lying.divergent_words)
    # A flagged turn is re-transcribed openly as a diagnostic: what the audio said instead.
    assert lying.retranscript and lying.divergence is not None and lying.divergence > 0.5
    after = REGISTRY.get_sample_value("voicefleet_transcript_divergence_flagged_total")
    assert after == before + 1

    # Digits have no pronunciation to align: such a turn is judged by the open WER against the
    # threshold, which is the operator's to set (at 1.0 only worse than all-wrong is flagged).
    digits = TurnRecord(
        turn_id="t4",
        sent_to_tts="x",
        played_text="your order of 300 pizzas has been confirmed",
        played_ms=1500,
        interrupted=False,
    )
    lenient = Auditor(enabled=True, session_id="audit-test", threshold=1.0)
    await lenient.audit(digits, audio, OUT_RATE)
    assert digits.method == "wer" and digits.divergence is not None and digits.divergence > 0.5
    assert not digits.flagged

    silent = TurnRecord(turn_id="t3", sent_to_tts="x", played_text="", played_ms=0, interrupted=True)
    await auditor.audit(silent, b"", OUT_RATE)
    assert silent.audit == "skipped" and not silent.flagged
    # The revision's counters (canary analysis) saw the two audits and the one flag; a skip is no audit.
    assert tally.take() == {"audited_turns": 2, "divergence_flags": 1}


async def test_retranscribe_always_gives_every_turn_its_open_transcript():
    config = make_config(vad="webrtc", stt="pocketsphinx", tts="espeak", vocabulary=VOCABULARY)
    compliance = ComplianceSpec(retranscribe="always")
    pipeline = config.pipeline.model_copy(update={"compliance": compliance})
    async with Harness(config.model_copy(update={"pipeline": pipeline})) as h:
        await h.play_caller(silence(300) + espeak_utterance("hello"))
        await h.until(lambda: [e for e in h.of_type("user_transcript") if e.final], what="final transcript")
        await h.drain_agent()
        await h.session.wait_audits()
        [record] = h.session.turn_records
        assert record.audit == "done" and record.method == "align" and not record.flagged
        assert record.retranscript and record.divergence is not None


async def test_audit_can_be_turned_off():
    config = make_config(vad="webrtc", stt="pocketsphinx", tts="espeak", vocabulary=VOCABULARY)
    pipeline = config.pipeline.model_copy(update={"compliance": ComplianceSpec(audit=False)})
    async with Harness(config.model_copy(update={"pipeline": pipeline})) as h:
        await h.play_caller(silence(300) + espeak_utterance("hello"))
        await h.until(lambda: [e for e in h.of_type("user_transcript") if e.final], what="final transcript")
        await h.drain_agent()
        await h.session.wait_audits()
        [record] = h.session.turn_records
        assert record.played_text and record.audit == "skipped" and record.retranscript is None


def test_word_error_rate():
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_error_rate("The cat, sat!", "the cat sat") == 0.0
    assert word_error_rate("the cat sat", "the sat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat sat", "a dog sat down") == pytest.approx(1.0)
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "noise") == 1.0
    assert word_error_rate("words", "") == 1.0
