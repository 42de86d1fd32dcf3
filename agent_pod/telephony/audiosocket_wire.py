"""Asterisk AudioSocket framing, pure so it is tested directly (fuzzed included).

A frame is a 3-byte header — kind (1 byte), payload length (2 bytes, big-endian) — and the payload.
Kinds: 0x00 hangup, 0x01 the call's UUID (16 bytes, always the first frame), 0x03 one DTMF digit
(ASCII), 0x10 audio (signed linear 16-bit little-endian, 8 kHz mono; 320 bytes per 20 ms), 0xff an
error (an optional code). Lengths are trusted only up to MAX_PAYLOAD_BYTES: a larger one is garbage
or a hostile peer, and since the stream has no resynchronisation point the connection is given up.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass

from ..pipeline.dtmf import DTMF_DIGITS

HEADER = struct.Struct(">BH")
SAMPLE_RATE = 8000
FRAME_BYTES = 320  # 20 ms of slin at 8 kHz
# Asterisk forwards the channel's frames: 20 ms usually, up to a 100 ms packetisation time.
MAX_AUDIO_BYTES = 5 * FRAME_BYTES
# No valid frame is larger than the largest audio frame.
MAX_PAYLOAD_BYTES = MAX_AUDIO_BYTES


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """The code in the error frames the pod sends before it hangs up (application-specific codes)."""

    PROTOCOL = 0x10  # unreadable stream: garbage, an oversized length, no UUID first
    REFUSED = 0x11  # the call was not admitted (unknown UUID, auth, capacity, draining)
    ENDED = 0x12  # the session ended on the pod's side with an error


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes


@dataclass(frozen=True)
class Refused:
    """A frame dropped with a reason; the stream goes on."""

    reason: str
    message: str


class ProtocolError(Exception):
    """The stream cannot be read any further."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check(frame: Frame) -> Refused | None:
    """Why a well-framed frame is refused (its payload does not fit its kind), or None."""
    kind, size = frame.kind, len(frame.payload)
    if kind == Kind.AUDIO:
        if size == 0 or size % 2:
            return Refused("audio_size", f"audio frame of {size} bytes: slin needs whole 16-bit samples")
        return None  # the upper bound is MAX_PAYLOAD_BYTES, enforced by the parser
    if kind == Kind.DTMF:
        if size != 1 or chr(frame.payload[0]) not in DTMF_DIGITS:
            return Refused("dtmf", f"DTMF frame must be one digit of 0-9*#A-D, got {frame.payload[:8]!r}")
        return None
    if kind == Kind.UUID:
        return None if size == 16 else Refused("uuid", f"UUID frame of {size} bytes (16 expected)")
    if kind in (Kind.HANGUP, Kind.ERROR):
        return None
    return Refused("unknown_kind", f"unknown frame kind 0x{kind:02x} ({size} bytes): skipped")


class FrameParser:
    """Incremental: bytes in as they arrive, whole frames (or refusals) out. Holds at most one frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Frame | Refused]:
        """The frames completed by ``data``; raises ProtocolError (then on every call) when the stream is
        unreadable."""
        if self.broken is not None:
            raise self.broken
        buffer = self._buffer
        buffer += data
        out: list[Frame | Refused] = []
        while len(buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer)
            if length > MAX_PAYLOAD_BYTES:
                self.broken = ProtocolError(
                    "oversized",
                    f"frame kind 0x{kind:02x} announces {length} bytes (at most {MAX_PAYLOAD_BYTES}): "
                    "garbage or a peer that is not AudioSocket",
                )
                buffer.clear()
                raise self.broken
            end = HEADER.size + length
            if len(buffer) < end:
                break
            frame = Frame(kind, bytes(buffer[HEADER.size : end]))
            del buffer[:end]
            out.append(check(frame) or frame)
        return out


def call_uuid(frame: Frame) -> uuid.UUID:
    return uuid.UUID(bytes=frame.payload)


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return HEADER.pack(kind, len(payload)) + payload


def audio(pcm: bytes) -> bytes:
    return encode(Kind.AUDIO, pcm)


def hangup() -> bytes:
    return encode(Kind.HANGUP)


def error(code: ErrorCode) -> bytes:
    return encode(Kind.ERROR, bytes([code]))


def uuid_frame(call: uuid.UUID) -> bytes:
    return encode(Kind.UUID, call.bytes)


def dtmf(digit: str) -> bytes:
    return encode(Kind.DTMF, digit.encode("ascii"))
