"""WebRTC's GMM VAD (webrtcvad-wheels): cheap, binary decisions on 20 ms frames."""

from __future__ import annotations

import webrtcvad

from ..config import VADProvider


class WebRTCVAD:
    """``options["mode"]`` is the aggressiveness 0..3 (default 2); probabilities are 0.0 or 1.0."""

    name = "webrtc"
    sample_rate = 16000
    frame_samples = 320  # 20 ms; webrtcvad takes 10, 20 or 30 ms

    def __init__(self, choice: VADProvider | None = None) -> None:
        options = choice.options if choice is not None else {}
        mode = int(options.get("mode", "2"))
        if not 0 <= mode <= 3:
            raise ValueError(f"webrtc VAD mode must be 0..3, got {mode}")
        self._vad = webrtcvad.Vad(mode)

    def speech_probability(self, frame: bytes) -> float:
        return 1.0 if self._vad.is_speech(frame, self.sample_rate) else 0.0

    def reset(self) -> None:
        """The GMM adapts slowly on its own; nothing to clear between utterances."""
