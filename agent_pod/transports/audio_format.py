"""Checks of the audio formats a caller asks for, pure so they are tested directly."""

from __future__ import annotations

# What voicefleet.v1.AudioFormat documents for the gRPC stream.
SUPPORTED_SAMPLE_RATES = (16000, 24000, 48000)


def check_format(sample_rate: int, channels: int) -> str | None:
    """Why an audio format is refused, or None. channels 0 is proto3's unset value and means mono."""
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        return (
            f"sample_rate_hz must be one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}, got {sample_rate}"
        )
    if channels not in (0, 1):
        return f"only mono audio is carried (channels=1), got channels={channels}"
    return None
