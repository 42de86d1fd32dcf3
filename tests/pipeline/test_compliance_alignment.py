"""The compliance check by forced alignment: the decision from an alignment (pure), and real espeak-ng
audio aligned by pocketsphinx against honest and tampered records."""

from __future__ import annotations

from agent_pod.pipeline.alignment import Alignment, Floors, check, divergent_in
from agent_pod.pipeline.compliance import examine
from agent_pod.providers.sphinx import words_of
from tests.support.audio import espeak_utterance

FLOORS = Floors(word=-30.0, pause=-500.0)
SAID = "your table for two is booked for eight tonight"


def _timed(segments: list[tuple[str, int, int]]) -> Alignment:
    """(word, frames, score) laid end to end from frame 0."""
    out: Alignment = []
    for name, frames, score in segments:
        out.append((name, sum(f for _, _, f, _ in out), frames, score))
    return out


def test_a_word_far_below_the_turns_typical_word_is_divergent():
    alignment = _timed(
        [
            ("your", 16, -16 * 20),
            ("table", 39, -39 * 30),
            ("six", 12, -12 * 95),
            ("is", 15, -15 * 25),
            ("<sil>", 6, -6 * 90),
            ("tonight", 49, -49 * 32),
        ]
    )
    # Words are judged against the turn's typical word, not the free phones (which fit them all better).
    free = [0.0] * 82 + [-90.0] * 6 + [0.0] * 49
    # Typical (median) word: -30 per frame; "six" is 65 below it; the pause fits like its free phones.
    assert divergent_in(alignment, free, FLOORS) == ["six"]
    assert divergent_in(alignment, free, Floors(word=-70.0)) == []


def test_a_pause_fitting_far_worse_than_free_phones_is_speech_the_record_lacks():
    alignment = _timed([("booked", 24, -24 * 25), ("<sil>", 63, -63 * 41), ("tonight", 49, -49 * 35)])
    alignment += [("(NULL)", 136, 1, 0), ("<sil>", 137, 35, -35 * 7)]
    free = [-25.0] * 24 + [-30.0] * 63 + [-35.0] * 49 + [-7.0] * 36
    # The 63-frame pause fits 11 per frame (693 in all) worse than the free phones: speech there.
    assert divergent_in(alignment, free, FLOORS) == ["+<after booked>"]
    assert divergent_in(alignment, free, Floors(pause=-700.0)) == []
    # Where the free phones fit the pause no better, it is a pause (the trailing one is silence too).
    quiet = free[:24] + [-41.0] * 63 + free[87:]
    assert divergent_in(alignment, quiet, FLOORS) == []


def test_no_alignment_names_the_word_whose_removal_fits():
    words = ["your", "table", "for", "six", "tonight"]

    def aligner(ws: list[str]) -> Alignment | None:
        if "six" in ws:
            return None
        return _timed([(w, 20, -20 * 30) for w in ws])

    free = [-30.0] * 100
    assert check(words, aligner, free, FLOORS) == (["six"], aligner(["your", "table", "for", "tonight"]))
    # Nothing fits even with one word left out: every word is divergent.
    assert check(words, lambda ws: None, free, FLOORS) == (words, None)


def test_honest_espeak_turns_are_not_flagged():
    for voice, speed in [("en-us", 160), ("en-gb", 190), ("en-us+f3", 150)]:
        finding = examine(espeak_utterance(SAID, 22050, voice, speed), 22050, SAID)
        assert finding.method == "align"
        assert finding.divergent_words == [], (voice, speed, finding)


def test_tampered_turns_are_flagged_with_the_divergent_words():
    # One word replaced: "booked" in the record, "cancelled" in the audio (speech where the record has none).
    replaced = examine(espeak_utterance(SAID.replace("booked", "cancelled")), 16000, SAID)
    assert replaced.divergent_words
    assert set(replaced.divergent_words) <= {"is", "booked", "+<after is>", "+<after booked>"}

    dropped = examine(espeak_utterance("your table for two is booked tonight"), 16000, SAID)
    assert dropped.divergent_words and set(dropped.divergent_words) <= {"for", "eight", "+<after booked>"}

    added = examine(espeak_utterance("your table for two is booked for eight never tonight"), 16000, SAID)
    assert added.divergent_words == ["+<after eight>"]

    other = examine(espeak_utterance("please hold while I check your account"), 16000, SAID)
    assert other.divergent_words == words_of(SAID)


def test_text_the_aligner_cannot_pronounce_is_left_to_the_open_wer():
    finding = examine(espeak_utterance("your table for 2 is booked"), 16000, "your table for 2 is booked")
    assert finding.method == "wer" and finding.divergent_words == [] and finding.retranscript
