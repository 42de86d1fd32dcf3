"""Pure decision logic of the transports and the caller-side client."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent_pod.client.caller_audio import frames, speech_ends
from agent_pod.settings import advertised_host
from agent_pod.transports.audio_format import check_format
from agent_pod.transports.hub import MAX_CATCH_UP_TICKS, ticks_due
from agent_pod.transports.ice import IcePolicy, candidate_ports, ports_from
from agent_pod.transports.webrtc import AgentAudioTrack, send_silence
from tests.support.audio import espeak_utterance
from tests.support.pod import tone


def test_ports_from_wraps_around_once():
    assert list(ports_from(10, 14, 12)) == [12, 13, 14, 10, 11]
    assert list(ports_from(10, 14, 99)) == [10, 11, 12, 13, 14]
    assert list(ports_from(7, 7, 7)) == [7]


def test_ice_policy_refuses_reversed_range():
    with pytest.raises(ValueError):
        IcePolicy(addresses=["127.0.0.1"], port_min=5000, port_max=4000)
    with pytest.raises(ValueError):
        IcePolicy(addresses=[])


def test_candidate_ports_reads_udp_host_candidates():
    sdp = (
        "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\n"
        "a=candidate:2 1 tcp 1 1.2.3.4 9 typ host\r\n"
    )
    assert candidate_ports(sdp) == [40001]


@pytest.mark.parametrize(
    ("rate", "channels", "ok"),
    [
        (16000, 1, True),
        (48000, 0, True),
        (24000, 1, True),
        (44100, 1, False),
        (16000, 2, False),
        (0, 1, False),
    ],
)
def test_check_format(rate, channels, ok):
    assert (check_format(rate, channels) is None) == ok


def test_advertised_host_prefers_explicit_then_pod_ip():
    assert advertised_host("voice.example", "10.0.0.5", "0.0.0.0") == "voice.example"
    assert advertised_host("", "10.0.0.5", "0.0.0.0") == "10.0.0.5"
    assert advertised_host("", "", "0.0.0.0") == "127.0.0.1"
    assert advertised_host("", "", "192.0.2.7") == "192.0.2.7"


def test_frames_pad_the_last_frame():
    chunks = frames(b"\x01\x00" * 500, 16000)
    assert [len(c) for c in chunks] == [640, 640]
    assert chunks[1][360:] == bytes(280)


def _tone(rate: int, seconds: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()


def test_speech_ends_finds_each_utterance_end():
    rate = 16000
    quiet = bytes(rate * 2 // 2)  # 0.5 s
    pcm = _tone(rate, 0.4) + quiet + _tone(rate, 0.2) + quiet
    assert speech_ends(pcm, rate) == [20, 55]


def test_speech_end_at_the_very_end_counts():
    pcm = bytes(16000) + _tone(16000, 0.2)
    assert speech_ends(pcm, 16000) == [len(frames(pcm, 16000))]


def test_dtx_sends_silence_for_200_ms_after_speech_then_every_400_ms():
    assert [n for n in range(1, 71) if send_silence(n)] == [*range(1, 11), 30, 50, 70]


async def test_agent_track_keeps_rtp_time_across_dtx_gaps():
    track = AgentAudioTrack()
    speech = tone(48000, 0.02)
    ticks = [speech] + [None] * 40 + [speech]
    sent = [0, *range(1, 11), 30, 41]  # speech, hangover silence, one silence packet, speech again
    for tick, pcm in enumerate(ticks):
        track.put(pcm)
        if tick in sent:
            packet = await asyncio.wait_for(track.recv(), 5)
            assert packet.pts == tick * 960, f"tick {tick}: RTP time must count every tick"
    track.stop()


def test_missed_playout_ticks_are_made_good_up_to_a_bound():
    assert ticks_due(None, 7) == (1, 0)  # the first tick
    assert ticks_due(7, 8) == (1, 0)
    assert ticks_due(7, 10) == (3, 0)  # two ticks missed: three frames now
    assert ticks_due(7, 7 + MAX_CATCH_UP_TICKS + 4) == (MAX_CATCH_UP_TICKS, 4)
    assert ticks_due(7, 7) == (1, 0)  # never fewer than one frame per tick


def test_opus_complexity_reaches_the_encoder_and_every_level_decodes():
    from agent_pod.transports.opus import FRAME_SAMPLES, MonoDecoder, MonoEncoder

    speech = espeak_utterance("the quick brown fox jumps over the lazy dog", rate=48000)
    frames = [
        speech[i : i + FRAME_SAMPLES * 2]
        for i in range(0, len(speech) - FRAME_SAMPLES * 2 + 1, FRAME_SAMPLES * 2)
    ]
    streams = {}
    for complexity in (0, 5, 10):
        encoder, decoder = MonoEncoder(complexity), MonoDecoder(16000)
        packets = [encoder.encode(f) for f in frames]
        assert all(len(decoder.decode(p)) == 640 for p in packets)  # 20 ms at 16 kHz, every packet
        streams[complexity] = packets
    assert streams[0] != streams[5] != streams[10]  # the setting changes what libopus produces
