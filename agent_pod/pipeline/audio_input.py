"""Caller audio in: validate, resample to the VAD's rate, cut into VAD windows, score, gate.

Everything here is synchronous and cheap so that it runs inline in
``push_audio`` and a barge-in decision is taken on the very window that
completes it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator

from ..audio.pcm import BYTES_PER_SAMPLE, validate_chunk
from ..audio.resample import Framer, StreamResampler
from ..providers.base import VAD
from .vad_gate import Decision, GateParams, VadGate


class AudioInput:
    def __init__(
        self,
        vad: VAD,
        params: GateParams,
        on_vad_error: Callable[[Exception], VAD | None],
        preroll_ms: int = 200,
    ) -> None:
        self.vad = vad
        self._on_vad_error = on_vad_error
        self.gate = VadGate(params)
        self.rate = vad.sample_rate
        self.window_bytes = vad.frame_samples * BYTES_PER_SAMPLE
        self._framer = Framer(self.window_bytes)
        self._resampler: StreamResampler | None = None
        # Audio just before speech is detected, so the STT hears the first syllable.
        self._preroll: deque[bytes] = deque(maxlen=max(1, int(preroll_ms / params.window_ms)))

    def replace_vad(self, vad: VAD) -> None:
        """Continue with another VAD of the chain (the gate keeps its state; windows may change size)."""
        window_bytes = vad.frame_samples * BYTES_PER_SAMPLE
        if vad.sample_rate != self.rate:
            raise ValueError(f"VAD {vad.name} runs at {vad.sample_rate} Hz, the chain at {self.rate} Hz")
        if window_bytes != self.window_bytes:
            self._framer = Framer(window_bytes)
            self.window_bytes = window_bytes
            window_ms = vad.frame_samples * 1000 / vad.sample_rate
            self.gate.params = dataclasses.replace(self.gate.params, window_ms=window_ms)
        self.vad = vad

    def _score(self, window: bytes) -> float:
        try:
            return self.vad.speech_probability(window)
        except Exception as exc:
            # A broken VAD must not break the call: move to the next one, or hear this window as silence.
            replacement = self._on_vad_error(exc)
            if replacement is not None:
                self.replace_vad(replacement)
            return 0.0

    def preroll(self) -> list[bytes]:
        return list(self._preroll)

    def feed(self, pcm: bytes, sample_rate: int) -> Iterator[tuple[Decision, bytes]]:
        """Validate (InvalidAudio before any state changes), then yield (decision, window) per window."""
        validate_chunk(pcm, sample_rate)
        if self._resampler is None or self._resampler.in_rate != sample_rate:
            self._resampler = StreamResampler(sample_rate, self.rate)
        return self._windows(self._resampler.process(pcm))

    def _windows(self, pcm: bytes) -> Iterator[tuple[Decision, bytes]]:
        for window in self._framer.push(pcm):
            decision = self.gate.update(self._score(window))
            yield decision, window
            self._preroll.append(window)
