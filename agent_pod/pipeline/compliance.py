"""Compliance records: per agent turn, what was sent to TTS, what was played, and what the audio says.

The played audio is re-transcribed independently (pocketsphinx with its
general English model, not the session's vocabulary) after the turn, in one
worker thread per pod so it never competes with the event loop for long, and
compared with the recorded played text by word error rate. A divergence above
the threshold is flagged (counted by the session's ``PipelineRecorder``, and a log line).

Be aware of what the score can tell: pocketsphinx's bundled model on
synthetic (espeak-ng) speech has a word error rate of 0.4-0.9 by itself, so
with offline providers the score mostly catches gross mismatches (audio that
says much more or less than the record); with real voices and a stronger
recognizer it is a finer check. Audits of a busy pod queue up; past
``MAX_BACKLOG`` pending audits new ones are skipped (and say so in the record).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from ..audio.resample import StreamResampler
from ..providers.sphinx import SAMPLE_RATE, make_decoder, transcribe, words_of
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
    retranscript: str | None = None
    divergence: float | None = None  # word error rate of retranscript against played_text
    flagged: bool = False
    audit: str = "pending"  # pending | done | skipped (no audio, synthetic STT, backlog) | failed
    # The supervisor's verdict on each draft piece (drafts it vetoed are here, never in the history).
    supervisor: list[Check] = Field(default_factory=list)
    vetoed: bool = False
    # Where the turn's played audio lies in the call's recording (ms from its start); None: not recorded.
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None


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


def _retranscribe(pcm: bytes, rate: int) -> str:
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = make_decoder()
    resampler = StreamResampler(rate, SAMPLE_RATE)
    audio = resampler.process(pcm) + resampler.flush()
    return transcribe(decoder, audio)


class Auditor:
    def __init__(
        self,
        *,
        enabled: bool,
        session_id: str,
        threshold: float = 0.5,
        recorder: PipelineRecorder | None = None,
    ) -> None:
        self.enabled = enabled
        self.session_id = session_id
        self.threshold = threshold
        self.recorder = recorder or PipelineRecorder()

    async def audit(self, record: TurnRecord, pcm: bytes, rate: int) -> None:
        """Fill in the record's re-transcription and divergence (runs the decoder in the audit thread)."""
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
            text = await asyncio.get_running_loop().run_in_executor(_executor, _retranscribe, pcm, rate)
        except Exception:
            record.audit = "failed"
            log.exception("session %s turn %s: re-transcription failed", self.session_id, record.turn_id)
            return
        finally:
            _backlog -= 1
        record.retranscript = text
        record.divergence = word_error_rate(record.played_text, text)
        record.flagged = record.divergence > self.threshold
        record.audit = "done"
        self.recorder.turn_audited(record.flagged)
        if record.flagged:
            log.warning(
                "session %s turn %s: played audio diverges from the record (WER %.2f > %.2f): "
                "played %r, heard %r",
                self.session_id,
                record.turn_id,
                record.divergence,
                self.threshold,
                record.played_text,
                text,
                extra={"session_id": self.session_id},
            )
