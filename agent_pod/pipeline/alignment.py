"""Deciding from a forced alignment whether played audio says the recorded words, and which ones it doesn't.

The recogniser is told the text that was supposed to be played and made to fit it to the audio
(forced alignment). Each word's score per 10 ms frame says how far its sounds are from the best
sound model at each frame. How well honest speech fits depends on the voice and the line (an
en-gb espeak-ng voice through a phone line fits the bundled US model much worse than a clean en-us
one), so a word is judged against the turn's own typical word (the median per-frame score): a
word far below it is audio that is not that word. A pause the aligner put between words is judged
against a free phone loop over the same frames (goodness of pronunciation): speech the record does
not have fits the free phones far better than silence, whatever the voice. When no path through
the words fits at all, each recorded word is left out in turn: the word whose removal lets the rest
fit is the one the audio does not say. The margins are calibrated on espeak-ng speech with
``python -m bench.divergence`` (docs/compliance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# An alignment: (word or "<sil>"-like filler, first 10 ms frame, frames, acoustic score in pocketsphinx
# log units).
Alignment = list[tuple[str, int, int, int]]
Aligner = Callable[[list[str]], Alignment | None]


@dataclass(frozen=True)
class Floors:
    word: float = -100.0  # a word this far below the turn's median word (per frame) is not that word
    pause: float = -800.0  # a pause this far below the free phone loop (in all) is speech the record lacks


FLOORS = Floors()  # as calibrated by bench.divergence


def _filler(name: str) -> bool:
    return name.startswith("<") or name.startswith("[") or name.startswith("(")


def divergent_in(alignment: Alignment, free: Sequence[float], floors: Floors) -> list[str]:
    """The words of a successful alignment whose audio does not fit them, and "+<after WORD>" for each
    pause between words that is speech the record does not have. ``free``: the score of each frame
    under the free phone loop (``sphinx.phone_loop``)."""
    words = sorted(score / max(frames, 1) for name, _, frames, score in alignment if not _filler(name))
    if not words:
        return []
    typical = words[len(words) // 2]
    divergent: list[str] = []
    previous = "start"
    for name, start, frames, score in alignment:
        if _filler(name):
            if score - sum(free[start : start + frames]) < floors.pause:
                divergent.append(f"+<after {previous}>")
        else:
            if score / max(frames, 1) < typical + floors.word:
                divergent.append(name)
            previous = name
    return divergent


def check(
    words: list[str], aligner: Aligner, free: Sequence[float], floors: Floors
) -> tuple[list[str], Alignment | None]:
    """The divergent words of ``words`` against the audio behind ``aligner``, and the alignment used.

    An empty list: the audio says the words. No alignment at all: each word is left out in turn; the
    best-fitting removal after which nothing else diverges names the word, and if there is none, all
    of them are divergent.
    """
    alignment = aligner(words)
    if alignment is not None:
        return divergent_in(alignment, free, floors), alignment
    fits: list[tuple[float, int, Alignment]] = []
    if len(words) > 1:
        for i in range(len(words)):
            rest = aligner(words[:i] + words[i + 1 :])
            if rest is not None and not divergent_in(rest, free, floors):
                fits.append((_per_frame(rest), i, rest))
    if fits:
        _, i, rest = max(fits)
        return [words[i]], rest
    return list(words), None


def _per_frame(alignment: Alignment) -> float:
    return sum(s for _, _, _, s in alignment) / max(sum(f for _, _, f, _ in alignment), 1)
