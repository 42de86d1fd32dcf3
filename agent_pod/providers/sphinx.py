"""Building pocketsphinx decoders (shared by the STT provider and the compliance re-transcription)."""

from __future__ import annotations

import logging
import re

from pocketsphinx import Decoder

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_WORD = re.compile(r"[a-z']+")


def words_of(text: str) -> list[str]:
    """Lower-case words as the pronunciation dictionary spells them."""
    return _WORD.findall(text.lower())


def phrase_grammar(decoder: Decoder, vocabulary: list[str]) -> str | None:
    """JSGF grammar: an utterance is one or more of the vocabulary phrases.

    Whole phrases constrain recognition far more than a loop of single words
    (which is also slower): on espeak-ng speech the bundled model turns
    "book a table for two tonight" into "look up the goal for two like" with
    its general LM, and gets it right with the phrase grammar. Phrases with
    words missing from the dictionary are left out (logged).
    """
    phrases: list[str] = []
    for entry in vocabulary:
        words = words_of(entry)
        missing = [w for w in words if decoder.lookup_word(w) is None]
        if missing:
            log.warning(
                "vocabulary phrase %r skipped: not in the pronunciation dictionary: %s", entry, missing
            )
            continue
        if words:
            phrases.append(" ".join(words))
    if not phrases:
        return None
    alternatives = " | ".join(sorted(set(phrases)))
    return f"#JSGF V1.0;\ngrammar vocabulary;\npublic <utterance> = ( {alternatives} )+ ;\n"


def make_decoder(vocabulary: list[str] | None = None) -> Decoder:
    """A decoder at 16 kHz: the general English LM, or the phrase grammar of ``vocabulary``. Loads ~0.3 s."""
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    if vocabulary:
        grammar = phrase_grammar(decoder, vocabulary)
        if grammar is not None:
            decoder.add_jsgf_string("vocabulary", grammar)
            decoder.activate_search("vocabulary")
    return decoder


def transcribe(decoder: Decoder, pcm: bytes) -> str:
    """Whole-utterance decoding of 16 kHz PCM16 (blocking: call from a worker thread)."""
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""
