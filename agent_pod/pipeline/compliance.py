"""Compliance records: per agent turn, what was sent to TTS, what was played, and what the audio says.

After the turn, in one worker thread per pod so it never competes with the
event loop for long, the played audio is checked against the recorded played
text by forced alignment (``alignment.py``): the recogniser is made to fit the
recorded words to the audio, and the words that do not fit are the record's
``divergent_words``; any makes the turn flagged (counted by the session's
``PipelineRecorder``, and a log line). Measured on espeak-ng speech with
``python -m bench.divergence`` (docs/compliance.md).

Where the check cannot decide, the audio is re-transcribed openly
(pocketsphinx's general English model, ~7x the check's CPU):
``retranscript`` and its word error rate ``divergence``. That score alone is
noise on synthetic speech (WER 0.4-0.9 on honest turns), so it decides the
flag only for text the aligner cannot pronounce (digits, words missing from
the dictionary: ``method="wer"``, against ``threshold``); for flagged turns it
is a diagnostic, and other turns go without it unless
``spec.pipeline.compliance.retranscribe`` is ``always``. Audits of a busy pod
queue up; past ``MAX_BACKLOG`` pending audits new ones are skipped (and say so
in the record).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ..audio.resample import StreamResampler
from ..providers.sphinx import (
    SAMPLE_RATE,
    align,
    make_aligner,
    make_decoder,
    phone_loop,
    pronounceable,
    transcribe,
    words_of,
)
from .alignment import FLOORS, Floors, check
from .recorder import PipelineRecorder
from .supervisor import Check

log = logging.getLogger(__name__)

MAX_BACKLOG = 32

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compliance")
_local = threading.local()
_backlog = 0


class TurnRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn_id: str
    sent_to_tts: str
    played_text: str
    played_ms: int
    interrupted: bool
    # The open re-transcription (method "wer", flagged turns, or retranscribe "always"; else None).
    retranscript: str | None = None
    divergence: float | None = None  # word error rate of retranscript against played_text
    flagged: bool = False
    # How the flag was decided: "align" (forced alignment against played_text) or "wer" (divergence
    # against the threshold, for text the aligner cannot pronounce); None until audited.
    method: Literal["align", "wer"] | None = None
    # The played_text words the audio does not say ("+<after WORD>": speech the record lacks).
    divergent_words: list[str] = Field(default_factory=list)
    audit: str = "pending"  # pending | done | skipped (no audio, synthetic STT, backlog) | failed
    # The supervisor's verdict on each draft piece (drafts it vetoed are here, never in the history).
    supervisor: list[Check] = Field(default_factory=list)
    vetoed: bool = False
    # Where the turn's played audio lies in the call's recording (ms from its start); None: not recorded.
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    # The knowledge base documents the turn's answer was grounded in (retrieval gave them to the LLM).
    knowledge_docs: list[str] = Field(default_factory=list)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (1.0 for any words against nothing)."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1] / len(ref)


class Finding(NamedTuple):
    retranscript: str | None
    method: Literal["align", "wer"]
    divergent_words: list[str]


def examine(
    pcm: bytes, rate: int, played_text: str, floors: Floors = FLOORS, *, retranscribe: bool = False
) -> Finding:
    """The words of ``played_text`` the audio does not say, and the open re-transcription when the
    alignment cannot decide, found divergent words, or ``retranscribe`` asks for it (blocking, seconds
    of CPU for long turns: runs in the audit thread)."""
    aligner = getattr(_local, "aligner", None)
    if aligner is None:
        aligner = _local.aligner = make_aligner()
    resampler = StreamResampler(rate, SAMPLE_RATE)
    audio = resampler.process(pcm) + resampler.flush()
    words = words_of(played_text)
    # Digits are spoken but have no dictionary spelling here: such text is left to the WER.
    if not words or any(c.isdigit() for c in played_text) or not pronounceable(aligner, words):
        return Finding(_retranscribe(audio), "wer", [])
    free = phone_loop(aligner, audio)
    divergent, _ = check(words, lambda w: align(aligner, w, audio), free, floors)
    return Finding(_retranscribe(audio) if divergent or retranscribe else None, "align", divergent)


def _retranscribe(audio: bytes) -> str:
    # The general LM's decoder (~90 MB) is loaded by the first turn that needs it.
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = make_decoder()
    return transcribe(decoder, audio)


class Auditor:
    def __init__(
        self,
        *,
        enabled: bool,
        session_id: str,
        threshold: float = 0.5,
        retranscribe_always: bool = False,
        recorder: PipelineRecorder | None = None,
    ) -> None:
        self.enabled = enabled
        self.session_id = session_id
        self.threshold = threshold
        self.retranscribe_always = retranscribe_always
        self.recorder = recorder or PipelineRecorder()

    async def audit(self, record: TurnRecord, pcm: bytes, rate: int) -> None:
        """Fill in the record's divergent words, flag and any re-transcription (in the audit thread)."""
        global _backlog
        if not pcm:
            record.audit = "skipped"
            return
        if _backlog >= MAX_BACKLOG:
            record.audit = "skipped"
            log.warning(
                "session %s turn %s: compliance audit skipped, backlog full", self.session_id, record.turn_id
            )
            return
        _backlog += 1
        try:
            finding = await asyncio.get_running_loop().run_in_executor(
                _executor,
                functools.partial(examine, retranscribe=self.retranscribe_always),
                pcm,
                rate,
                record.played_text,
            )
        except Exception:
            record.audit = "failed"
            log.exception("session %s turn %s: compliance check failed", self.session_id, record.turn_id)
            return
        finally:
            _backlog -= 1
        record.retranscript = finding.retranscript
        if finding.retranscript is not None:
            record.divergence = word_error_rate(record.played_text, finding.retranscript)
        record.method = finding.method
        record.divergent_words = finding.divergent_words
        if finding.method == "align":
            record.flagged = bool(finding.divergent_words)
        else:  # method "wer" always re-transcribes
            record.flagged = record.divergence is not None and record.divergence > self.threshold
        record.audit = "done"
        self.recorder.turn_audited(record.flagged)
        if record.flagged:
            log.warning(
                "session %s turn %s: played audio diverges from the record (%s; divergent words %s, "
                "open WER %.2f): played %r, heard %r",
                self.session_id,
                record.turn_id,
                finding.method,
                finding.divergent_words,
                record.divergence,
                record.played_text,
                finding.retranscript,
                extra={"session_id": self.session_id},
            )
