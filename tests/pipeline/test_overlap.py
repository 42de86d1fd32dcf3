"""The overlap classifier and the bargeIn spec, directly (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, BargeInSpec, STTProvider
from agent_pod.pipeline.overlap import (
    Overlap,
    OverlapParams,
    classify_overlap,
    with_overlap_vocabulary,
    words,
)

PARAMS = OverlapParams.of(BargeInSpec(), min_speech_ms=300)


@pytest.mark.parametrize(
    ("transcript", "voiced_ms", "kind"),
    [
        ("stop", 200, Overlap.CANCEL),
        ("Stop!", 200, Overlap.CANCEL),
        ("stop stop", 400, Overlap.CANCEL),
        ("STOP. Stop.", 400, Overlap.CANCEL),
        ("hold on", 500, Overlap.CANCEL),
        ("Hold on...", 500, Overlap.CANCEL),
        ("okay stop", 500, Overlap.CANCEL),  # an acknowledgement and a cancel: the cancel wins
        ("wait, wait", 500, Overlap.CANCEL),
        ("uh-huh", 400, Overlap.BACKCHANNEL),
        ("uh huh", 400, Overlap.BACKCHANNEL),  # pocketsphinx spells it as two words
        ("Uh-huh.", 400, Overlap.BACKCHANNEL),
        ("mm-hmm", 600, Overlap.BACKCHANNEL),
        ("okay okay", 600, Overlap.BACKCHANNEL),
        ("Okay, right.", 600, Overlap.BACKCHANNEL),
        ("yeah", 100, Overlap.NOISE),  # below cancelMinSpeechMs: nothing heard is trusted
        ("stop", 100, Overlap.NOISE),
        ("", 800, Overlap.NOISE),
        ("  ...  ", 800, Overlap.NOISE),
        ("wait what time is it", 900, Overlap.SPEECH),  # a cancel word inside a sentence
        ("stop the music please", 900, Overlap.SPEECH),
        ("okay so tell me more", 900, Overlap.SPEECH),
        ("stopping", 400, Overlap.SPEECH),  # whole words only
        ("hello", 200, Overlap.NOISE),  # other words below minSpeechMs: ignored as before
        ("hello", 300, Overlap.SPEECH),
        ("okay", 1600, Overlap.SPEECH),  # too long for a backchannel: a misheard sentence
        ("okay stop", 1600, Overlap.SPEECH),
        ("", 1600, Overlap.NOISE),
    ],
)
def test_classify_overlap(transcript, voiced_ms, kind):
    assert classify_overlap(transcript, voiced_ms, PARAMS) is kind


def test_interrupting_kinds():
    assert [k for k in Overlap if k.interrupts] == [Overlap.CANCEL, Overlap.SPEECH]


def test_custom_phrases_are_normalised():
    spec = BargeInSpec.model_validate({"cancelPhrases": ["Shut up!", "ENOUGH"], "backchannels": ["I see"]})
    params = OverlapParams.of(spec, min_speech_ms=300)
    assert classify_overlap("shut up", 300, params) is Overlap.CANCEL
    assert classify_overlap("Enough, enough.", 300, params) is Overlap.CANCEL
    assert classify_overlap("i see", 300, params) is Overlap.BACKCHANNEL
    # "stop" is no longer a cancel phrase: ignored when short, a barge-in once long enough.
    assert classify_overlap("stop", 250, params) is Overlap.NOISE
    assert classify_overlap("stop", 300, params) is Overlap.SPEECH


def test_words():
    assert words("Uh-huh, OKAY… don\u2019t") == ("uh", "huh", "okay", "don't")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"cancelPhrases": ["..."]}, "cancelPhrases"),
        ({"backchannels": [""]}, "backchannels"),
        ({"cancelPhrases": ["x" * 101]}, "cancelPhrases"),
        ({"falseInterruptionTimeoutMs": 50}, "falseInterruptionTimeoutMs"),
        ({"cancelMinSpeechMs": 0}, "cancelMinSpeechMs"),
    ],
)
def test_bad_spec_names_the_field(spec, field):
    with pytest.raises(ValidationError) as err:
        AgentConfig.model_validate({"pipeline": {"bargeIn": spec}})
    assert field in str(err.value)


def test_a_phrase_cannot_be_both():
    with pytest.raises(ValidationError, match=r"\['okay'\] both in cancelPhrases and backchannels"):
        BargeInSpec.model_validate({"cancelPhrases": ["stop", "Okay"]})


def test_vocabulary_gains_the_phrases_only_when_restricted():
    spec = BargeInSpec()
    restricted = with_overlap_vocabulary(STTProvider(vocabulary=["tell me a story", "stop"]), spec)
    assert restricted.vocabulary[:2] == ["tell me a story", "stop"]
    assert set(restricted.vocabulary) == {"tell me a story", *spec.cancel_phrases, *spec.backchannels}
    assert with_overlap_vocabulary(STTProvider(), spec).vocabulary == []
    assert with_overlap_vocabulary(STTProvider(vocabulary=["a"]), BargeInSpec(enabled=False)).vocabulary == [
        "a"
    ]


@pytest.mark.parametrize(
    ("interim", "kind"),
    [
        ("uh", Overlap.BACKCHANNEL),  # may become "uh huh": not decided on half of it
        ("okay uh", Overlap.BACKCHANNEL),
        ("hold", Overlap.CANCEL),
        ("okay hold", Overlap.CANCEL),
        ("uh what", Overlap.SPEECH),
        ("wait", Overlap.CANCEL),
    ],
)
def test_interim_transcripts_that_may_grow_into_a_phrase(interim, kind):
    assert classify_overlap(interim, 400, PARAMS, partial=True) is kind
    final = classify_overlap(interim, 400, PARAMS)
    assert final is (Overlap.SPEECH if interim in {"uh", "okay uh", "hold", "okay hold", "uh what"} else kind)
