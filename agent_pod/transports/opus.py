"""Opus for the pod's WebRTC media, done once per frame and in mono.

aiortc would turn every agent frame into a stereo av.AudioFrame, resample it,
measure its level and encode it at 96 kb/s on a worker thread, and decode every
caller packet to 48 kHz stereo on a thread per caller. A voice agent needs less:
agent frames are encoded in mono (~0.15 ms a frame at complexity 5, inline: a
worker thread per tick's batch was tried and lost, as the thread waits for the
GIL between frames) and handed to aiortc as ready packets; while the agent is
silent one pre-encoded silence packet is sent again and again at no cost;
caller packets are decoded by libopus straight to 16 kHz mono, the rate VADs
and STTs listen at. Decoding to 16 kHz is cheaper than to 48 kHz and needs no resampler after
it, which would hold back ~14 ms of audio (soxr) and so delay every
end-of-turn and barge-in decision (FFmpeg's Opus decoders only output 48 kHz).
"""

from __future__ import annotations

import ctypes
import fractions
from functools import cache

import av
import opuslib_next
from opuslib_next.api import decoder as opus_decoder

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
BITRATE = 32000  # wideband voice
VOICE_RATE = 16000  # caller audio is decoded for the pipeline's VAD and STT at this rate
MAX_PACKET_MS = 120  # the longest Opus packet


class MonoEncoder:
    def __init__(self, complexity: int = 5) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = BITRATE
        codec.options = {"application": "voip", "compression_level": str(complexity)}
        codec.time_base = TIME_BASE
        self._codec = codec
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        """One 20 ms PCM16 mono frame at 48 kHz -> one Opus packet."""
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(p) for p in self._codec.encode(frame))


@cache
def silence_packet() -> bytes:
    """An Opus packet of 20 ms of silence (the encoder settles over a few frames first)."""
    encoder = MonoEncoder()
    silence = bytes(FRAME_SAMPLES * 2)
    packet = b""
    for _ in range(10):
        packet = encoder.encode(silence)
    return packet


class MonoDecoder:
    """Opus packets -> PCM16 mono at ``sample_rate`` (one of libopus' 8, 12, 16, 24 or 48 kHz)."""

    def __init__(self, sample_rate: int = VOICE_RATE) -> None:
        self.sample_rate = sample_rate
        self._decoder = opuslib_next.Decoder(sample_rate, 1)
        self._max_samples = sample_rate * MAX_PACKET_MS // 1000
        self._buffer = (ctypes.c_int16 * self._max_samples)()
        self._pointer = ctypes.cast(self._buffer, opuslib_next.api.c_int16_pointer)

    def decode(self, payload: bytes) -> bytes:
        """One Opus packet -> PCM16 (empty for a packet libopus refuses)."""
        samples = opus_decoder.libopus_decode(
            self._decoder.decoder_state, payload, len(payload), self._pointer, self._max_samples, 0
        )
        if samples <= 0:
            return b""
        return ctypes.string_at(self._buffer, samples * 2)
