"""The AudioSocket frame parser, directly: framing, per-kind checks, bounds and fuzzed input."""

from __future__ import annotations

import random
import uuid

import pytest

from agent_pod.telephony import audiosocket_wire as wire

CALL = uuid.UUID("9f1c2a3b-4d5e-4f60-8a7b-1c2d3e4f5a6b")


def _frames(items: list[wire.Frame | wire.Refused]) -> list[tuple[int, bytes]]:
    return [(i.kind, i.payload) for i in items if isinstance(i, wire.Frame)]


def test_a_call_parses_whatever_the_chunking() -> None:
    pcm = bytes(range(256)) + bytes(64)
    stream = wire.uuid_frame(CALL) + wire.audio(pcm) + wire.dtmf("7") + wire.audio(pcm) + wire.hangup()
    expected = [
        (wire.Kind.UUID, CALL.bytes),
        (wire.Kind.AUDIO, pcm),
        (wire.Kind.DTMF, b"7"),
        (wire.Kind.AUDIO, pcm),
        (wire.Kind.HANGUP, b""),
    ]
    rng = random.Random(3)
    for _ in range(200):  # split at random points, down to single bytes
        parser, out, i = wire.FrameParser(), [], 0
        while i < len(stream):
            step = rng.randint(1, 40)
            out += parser.feed(stream[i : i + step])
            i += step
        assert _frames(out) == expected
    assert wire.call_uuid(wire.Frame(wire.Kind.UUID, CALL.bytes)) == CALL


def test_frames_that_do_not_fit_their_kind_are_refused_and_the_stream_goes_on() -> None:
    parser = wire.FrameParser()
    items = parser.feed(
        wire.encode(wire.Kind.AUDIO, b"\x01" * 321)  # half a sample
        + wire.encode(wire.Kind.AUDIO)  # empty
        + wire.encode(wire.Kind.DTMF, b"x")
        + wire.encode(wire.Kind.DTMF, b"12")
        + wire.encode(wire.Kind.UUID, b"short")
        + wire.encode(0x42, b"abc")  # unknown kind: skipped whole
        + wire.audio(b"\x00" * wire.FRAME_BYTES)
    )
    reasons = [i.reason for i in items if isinstance(i, wire.Refused)]
    assert reasons == ["audio_size", "audio_size", "dtmf", "dtmf", "uuid", "unknown_kind"]
    assert _frames(items) == [(wire.Kind.AUDIO, b"\x00" * wire.FRAME_BYTES)]


def test_an_oversized_length_breaks_the_stream_for_good() -> None:
    parser = wire.FrameParser()
    header_only = wire.HEADER.pack(wire.Kind.AUDIO, wire.MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(wire.ProtocolError) as caught:
        parser.feed(header_only)  # refused from the header alone: nothing is waited for or buffered
    assert caught.value.reason == "oversized"
    with pytest.raises(wire.ProtocolError):
        parser.feed(wire.hangup())
    # The largest valid audio frame is taken.
    ok = wire.FrameParser().feed(wire.audio(b"\x00" * wire.MAX_AUDIO_BYTES))
    assert _frames(ok) == [(wire.Kind.AUDIO, b"\x00" * wire.MAX_AUDIO_BYTES)]


def test_fuzzed_garbage_never_escapes_the_parser_and_stays_bounded() -> None:
    rng = random.Random(13)
    for _ in range(500):
        parser = wire.FrameParser()
        blob = rng.randbytes(rng.randint(1, 4000))
        try:
            for start in range(0, len(blob), 97):
                for item in parser.feed(blob[start : start + 97]):
                    if isinstance(item, wire.Frame):
                        assert len(item.payload) <= wire.MAX_PAYLOAD_BYTES
                        assert wire.check(item) is None  # what comes out as a frame is valid
                    else:
                        assert item.reason and item.message
        except wire.ProtocolError as exc:
            assert exc.reason == "oversized"
        assert len(parser._buffer) < wire.HEADER.size + wire.MAX_PAYLOAD_BYTES


def test_encoding_refuses_a_payload_that_cannot_be_framed() -> None:
    with pytest.raises(ValueError):
        wire.encode(wire.Kind.AUDIO, bytes(70_000))
    assert wire.error(wire.ErrorCode.PROTOCOL) == b"\xff\x00\x01\x10"
    assert wire.hangup() == b"\x00\x00\x00"
