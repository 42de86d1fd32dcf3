"""Caller sound heard while the agent speaks: what it is, and what the agent does about it (pure).

``classify_overlap`` reads the transcript of such a sound:

- ``cancel``: only cancel phrases ("stop", "wait", "stop stop", "okay stop"). The agent stops, even
  when the sound was shorter than ``bargeIn.minSpeechMs``, and no turn is added: it waits.
- ``backchannel``: only backchannels ("uh-huh", "okay okay"). The agent goes on; no turn.
- ``speech``: other words, long enough to be a barge-in. The agent stops; it is the next turn.
- ``noise``: no words, or words from a sound too short to trust (a click the STT heard as a word).

Words from more than ``bargeIn.phraseMaxMs`` of voice are speech whatever they say: an STT restricted
to a vocabulary (pocketsphinx's grammar) hears a long sentence outside it as "okay" or "stop".

Matching is on normalised words (lower case, punctuation dropped, hyphens split: "Uh-huh." and
"uh huh" are the same), and a transcript matches only when such phrases cover all of it, so a cancel
word inside a longer sentence ("wait, what time is it") is speech.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import BargeInSpec, STTProvider

if TYPE_CHECKING:  # the provider registry imports this module: no import cycle through the turn
    from .turn import AgentTurn

_WORD = re.compile(r"[a-z0-9']+")


class Overlap(enum.Enum):
    CANCEL = "cancel"
    BACKCHANNEL = "backchannel"
    SPEECH = "speech"
    NOISE = "noise"

    @property
    def interrupts(self) -> bool:
        return self in (Overlap.CANCEL, Overlap.SPEECH)


Phrase = tuple[str, ...]


@dataclass(frozen=True)
class OverlapParams:
    cancel_phrases: frozenset[Phrase]
    backchannels: frozenset[Phrase]
    min_speech_ms: float  # voice that makes a barge-in (other words shorter than this are noise)
    min_word_ms: float  # voice below which no transcript is trusted
    phrase_max_ms: float  # voice above which it is not a backchannel or cancel phrase

    @classmethod
    def of(cls, spec: BargeInSpec, min_speech_ms: float) -> OverlapParams:
        return cls(
            cancel_phrases=phrases(spec.cancel_phrases),
            backchannels=phrases(spec.backchannels),
            min_speech_ms=min_speech_ms,
            min_word_ms=spec.cancel_min_speech_ms,
            phrase_max_ms=spec.phrase_max_ms,
        )


def words(text: str) -> Phrase:
    """Lower-case words without punctuation; hyphenated words split ("Uh-huh!" -> ("uh", "huh"))."""
    return tuple(_WORD.findall(text.lower().replace("\u2019", "'")))


def phrases(entries: Iterable[str]) -> frozenset[Phrase]:
    return frozenset(w for w in map(words, entries) if w)


def _cover(
    tokens: Phrase, start: int, table: frozenset[Phrase], partial: bool, memo: dict[int, bool]
) -> bool:
    """Whether tokens[start:] is a sequence of phrases of ``table`` (the last one possibly unfinished
    when the transcript is ``partial``)."""
    if start == len(tokens):
        return True
    if start not in memo:
        rest = tokens[start:]
        memo[start] = any(
            (tokens[start : start + len(p)] == p and _cover(tokens, start + len(p), table, partial, memo))
            or (partial and len(rest) < len(p) and p[: len(rest)] == rest)
            for p in table
        )
    return memo[start]


def classify_overlap(
    transcript: str, voiced_ms: float, params: OverlapParams, *, partial: bool = False
) -> Overlap:
    """What a caller sound of ``voiced_ms`` heard while the agent spoke was, from its transcript.

    An interim (``partial``) transcript that may still grow into a backchannel ("uh" of "uh-huh") or a
    cancel phrase counts as one, so that speech is never decided on half a phrase."""
    tokens = words(transcript)
    if not tokens or voiced_ms < params.min_word_ms:
        return Overlap.NOISE
    if voiced_ms > params.phrase_max_ms:
        return Overlap.SPEECH
    if _cover(tokens, 0, params.backchannels, partial, {}):
        return Overlap.BACKCHANNEL
    if _cover(tokens, 0, params.backchannels | params.cancel_phrases, partial, {}):
        return Overlap.CANCEL
    return Overlap.SPEECH if voiced_ms >= params.min_speech_ms else Overlap.NOISE


def with_overlap_vocabulary(choice: STTProvider, spec: BargeInSpec) -> STTProvider:
    """An STT restricted to a vocabulary must also be able to hear the cancel phrases and backchannels;
    without a vocabulary it hears everything already."""
    if not choice.vocabulary or not spec.enabled:
        return choice
    extra = [p for p in [*spec.cancel_phrases, *spec.backchannels] if p not in choice.vocabulary]
    return choice.model_copy(update={"vocabulary": [*choice.vocabulary, *extra]})


@dataclass
class OverlapUtterance:
    """A caller utterance sent to the STT because it overlapped ``turn``'s speech."""

    turn: AgentTurn
    voiced_ms: float
