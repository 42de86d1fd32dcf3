"""RMS energy VAD: nearly free, for benchmarks and clean loopback audio (not for noisy callers)."""

from __future__ import annotations

import math

import numpy as np

from ..audio.pcm import samples
from ..config import VADProvider


class EnergyVAD:
    """Speech probability from the frame's level: 0.5 at ``threshold_dbfs`` (default -40), steep logistic."""

    name = "energy"
    sample_rate = 16000
    frame_samples = 320  # 20 ms

    def __init__(self, choice: VADProvider | None = None) -> None:
        options = choice.options if choice is not None else {}
        self.threshold_dbfs = float(options.get("threshold_dbfs", "-40"))

    def speech_probability(self, frame: bytes) -> float:
        x = samples(frame).astype(np.float32)
        rms = math.sqrt(float(np.dot(x, x)) / max(len(x), 1)) / 32768.0
        dbfs = 20 * math.log10(rms) if rms > 0 else -120.0
        return 1.0 / (1.0 + math.exp(-(dbfs - self.threshold_dbfs) / 2.0))

    def reset(self) -> None:
        """Stateless."""
