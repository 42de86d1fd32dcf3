"""Building pocketsphinx decoders (shared by the STT provider and the compliance re-transcription)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from pocketsphinx import Decoder, get_model_path

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_WORD = re.compile(r"[a-z']+")
_VARIANT = re.compile(r"\(\d+\)$")
_LOG_BASE = math.log(1.0001)  # pocketsphinx's default logbase


def words_of(text: str) -> list[str]:
    """Lower-case words as the pronunciation dictionary spells them."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=1)
def _pronunciations() -> dict[str, list[str]]:
    """The bundled CMU dictionary: word -> its lines (alternative pronunciations included)."""
    entries: dict[str, list[str]] = {}
    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    with path.open(encoding="utf-8") as f:
        for line in f:
            word = _VARIANT.sub("", line.split(" ", 1)[0])
            entries.setdefault(word, []).append(line if line.endswith("\n") else line + "\n")
    return entries


def vocabulary_phrases(vocabulary: list[str]) -> list[str]:
    """The vocabulary entries the dictionary can pronounce, normalised; the others are logged and left out."""
    known = _pronunciations()
    phrases: list[str] = []
    for entry in vocabulary:
        words = words_of(entry)
        missing = [w for w in words if w not in known]
        if missing:
            log.warning(
                "vocabulary phrase %r skipped: not in the pronunciation dictionary: %s", entry, missing
            )
        elif words:
            phrases.append(" ".join(words))
    return sorted(set(phrases))


def phrase_grammar(phrases: list[str]) -> str:
    """JSGF grammar: an utterance is one or more of the vocabulary phrases.

    Whole phrases constrain recognition far more than a loop of single words
    (which is also much slower): on espeak-ng speech the bundled model turns
    "book a table for two tonight" into "look up the goal for two like" with
    its general LM, and gets it right with the phrase grammar.
    """
    return f"#JSGF V1.0;\ngrammar vocabulary;\npublic <utterance> = ( {' | '.join(phrases)} )+ ;\n"


def _restricted_dictionary(phrases: list[str]) -> str:
    """A dictionary file with only the vocabulary's words: ~5 MB per decoder instead of ~27 MB."""
    known = _pronunciations()
    words = sorted({w for p in phrases for w in p.split()})
    text = "".join(line for w in words for line in known[w])
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"voicefleet-sphinx-{digest}.dict"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return str(path)


def make_decoder(vocabulary: list[str] | None = None) -> Decoder:
    """A decoder at 16 kHz: the phrase grammar of ``vocabulary`` (with a dictionary of just its words),
    or the general English LM (~90 MB per decoder) when there is none. Loads in ~0.1-0.3 s."""
    phrases = vocabulary_phrases(vocabulary) if vocabulary else []
    if not phrases:
        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    # The grammar's first pass is the answer: the lattice best-path rescoring loses short utterances
    # (espeak-ng's "stop", "okay", "uh-huh" came out empty with it, and right without).
    decoder = Decoder(
        samprate=SAMPLE_RATE, lm=None, dict=_restricted_dictionary(phrases), bestpath=False, loglevel="FATAL"
    )
    decoder.add_jsgf_string("vocabulary", phrase_grammar(phrases))
    decoder.activate_search("vocabulary")
    return decoder


def transcribe(decoder: Decoder, pcm: bytes) -> str:
    """Whole-utterance decoding of 16 kHz PCM16 (blocking: call from a worker thread)."""
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


PHONE_LOOP = "phones"


def make_aligner() -> Decoder:
    """A decoder for forced alignment (``align``): no LM, the whole dictionary, and beams wide enough
    that the one path through the given words is never pruned away (with the default beams whole
    honest espeak-ng sentences found no path: the right one was dropped mid-utterance). It also has
    a free phone loop (``phone_loop``): the reference a pause's fit is judged against."""
    decoder = Decoder(
        samprate=SAMPLE_RATE,
        lm=None,
        bestpath=False,
        beam=1e-100,
        pbeam=1e-100,
        wbeam=1e-80,
        loglevel="FATAL",
    )
    # No phone LM: any phone may follow any other, so the loop fits whatever was said.
    decoder.add_allphone_file(PHONE_LOOP, None)
    return decoder


def pronounceable(decoder: Decoder, words: list[str]) -> bool:
    """Whether the decoder's dictionary has every word (forced alignment needs a pronunciation for each)."""
    return all(decoder.lookup_word(w) is not None for w in words)


def _dithered(pcm: bytes) -> bytes:
    """One-LSB dither, the same for every call: band-limited audio from the phone path, silent above
    4 kHz, otherwise breaks the 16 kHz model (15 of 128 honest phone-path turns found no path, 1 with it)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    noise = np.random.default_rng(0).integers(-1, 2, len(samples))
    return np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes()


def _log_score(ascore: float) -> int:
    """Segment.ascore is the score turned into a probability; back to log units (0 underflowed: worst)."""
    return round(math.log(ascore) / _LOG_BASE) if ascore > 0 else -(10**9)


def _decode(decoder: Decoder, search: str, pcm: bytes) -> bool:
    decoder.activate_search(search)
    decoder.start_utt()
    decoder.process_raw(_dithered(pcm), full_utt=True)
    decoder.end_utt()
    return decoder.hyp() is not None


def align(decoder: Decoder, words: list[str], pcm: bytes) -> list[tuple[str, int, int, int]] | None:
    """Forced alignment of 16 kHz PCM16 to ``words`` with a ``make_aligner`` decoder: (word, first
    frame, frames, acoustic score) per aligned word, with the silences and fillers put between them
    ("<sil>", "(NULL)"); None when no path through the words fits the audio.

    One pass of a grammar of just these words in order (the decoder puts optional silences between
    them). Frames are 10 ms; scores are in the decoder's log units (base 1.0001), each frame's relative
    to the best-scoring senone of that frame. Blocking: call from a worker thread.
    """
    try:
        decoder.add_jsgf_string(
            "align", f"#JSGF V1.0;\ngrammar align;\npublic <words> = {' '.join(words)} ;\n"
        )
        if not _decode(decoder, "align", pcm):
            return None
        return [
            (_VARIANT.sub("", s.word), s.start_frame, s.end_frame - s.start_frame + 1, _log_score(s.ascore))
            for s in decoder.seg()
        ]
    except (RuntimeError, ValueError):  # no path; a word the grammar parser refuses
        return None


def phone_loop(decoder: Decoder, pcm: bytes) -> list[float]:
    """The acoustic score of each 10 ms frame of 16 kHz PCM16 under the best free phone sequence (a
    ``make_aligner`` decoder), in ``align``'s units: what the frames fit when
    nothing says which words they are. Each phone's score is spread evenly over its frames. Blocking."""
    if not _decode(decoder, PHONE_LOOP, pcm):
        return []
    segments = list(decoder.seg())
    scores = [0.0] * (max((s.end_frame for s in segments), default=-1) + 1)
    for s in segments:
        frames = s.end_frame - s.start_frame + 1
        scores[s.start_frame : s.end_frame + 1] = [_log_score(s.ascore) / frames] * frames
    return scores
