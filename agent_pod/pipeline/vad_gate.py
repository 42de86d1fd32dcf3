"""The VAD state machine: window probabilities in, speech start/end decisions out (pure, no I/O).

Start needs ``min_speech_ms`` of voiced windows (gaps up to ``max_gap_ms`` are
tolerated while deciding, so a syllable dip does not restart the count, but
isolated clicks never add up); end needs ``min_silence_ms`` of consecutive
unvoiced windows. Once speech has started, a lower threshold (hysteresis, as
Silero's own iterator does) keeps soft word endings inside the utterance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.Enum):
    NONE = "none"
    CANDIDATE = "candidate"  # a voiced window after silence: an utterance may be starting
    ABORT = "abort"  # the candidate was noise
    START = "start"  # speech confirmed
    END = "end"  # the speech ended (end-of-turn point)


class State(enum.Enum):
    SILENCE = "silence"
    CANDIDATE = "candidate"
    SPEECH = "speech"


@dataclass(frozen=True)
class GateParams:
    window_ms: float
    threshold: float = 0.5
    min_speech_ms: float = 200
    min_silence_ms: float = 400
    max_gap_ms: float = 64
    hysteresis: float = 0.15


@dataclass
class VadGate:
    params: GateParams
    state: State = State.SILENCE
    voiced_ms: float = 0.0  # voiced audio since the candidate began
    elapsed_ms: float = 0.0  # audio since the candidate began
    silence_ms: float = 0.0  # trailing unvoiced audio

    def update(self, probability: float) -> Decision:
        p = self.params
        threshold = p.threshold - p.hysteresis if self.state is State.SPEECH else p.threshold
        voiced = probability >= threshold
        if self.state is State.SILENCE:
            if not voiced:
                return Decision.NONE
            self.state = State.CANDIDATE
            self.voiced_ms = self.elapsed_ms = p.window_ms
            self.silence_ms = 0.0
            return self._maybe_start(Decision.CANDIDATE)
        self.elapsed_ms += p.window_ms
        if voiced:
            self.voiced_ms += p.window_ms
            self.silence_ms = 0.0
        else:
            self.silence_ms += p.window_ms
        if self.state is State.CANDIDATE:
            if self.silence_ms > p.max_gap_ms:
                self.reset()
                return Decision.ABORT
            return self._maybe_start(Decision.NONE)
        if self.silence_ms >= p.min_silence_ms:
            self.reset()
            return Decision.END
        return Decision.NONE

    def _maybe_start(self, otherwise: Decision) -> Decision:
        if self.voiced_ms >= self.params.min_speech_ms:
            self.state = State.SPEECH
            return Decision.START
        return otherwise

    def reset(self) -> None:
        self.state = State.SILENCE
        self.voiced_ms = self.elapsed_ms = self.silence_ms = 0.0
