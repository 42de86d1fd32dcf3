"""Opus for the pod's WebRTC media, done once per frame and in mono.

aiortc would turn every agent frame into a stereo av.AudioFrame, resample it,
measure its level and encode it at 96 kb/s on a worker thread, and decode every
caller packet to 48 kHz stereo on a thread per caller. A voice agent needs less:
agent frames are encoded in mono (~0.1 ms a frame, cheaper inline than a thread
hop) and handed to aiortc as ready packets; while the agent is silent one
pre-encoded silence packet is sent again and again at no cost; caller packets
are decoded to mono straight from the receive path.
"""

from __future__ import annotations

import fractions
from functools import cache

import av

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
BITRATE = 32000  # wideband voice


class MonoEncoder:
    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = BITRATE
        codec.options = {"application": "voip"}
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
    sample_rate = SAMPLE_RATE

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "r")
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        self._codec = codec

    def decode(self, payload: bytes) -> bytes:
        """One Opus packet -> PCM16 mono at 48 kHz (empty for a packet the decoder refuses)."""
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.error.FFmpegError:
            return b""
        return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
