"""DeepgramTTS through the real deepgram-sdk (speak v1 REST) against the local Deepgram server."""

from __future__ import annotations

import asyncio

import pytest

from agent_pod.config import TTSProvider
from agent_pod.providers.base import ProviderError
from agent_pod.providers.deepgram_tts import DeepgramTTS
from tests.support.net import free_port
from tests.wire.deepgram_server import DeepgramServer
from tests.wire.speech import espeak_pcm

TEXT = "Your table for two is booked for seven tonight."


@pytest.fixture
def key(deepgram_server: DeepgramServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEEPGRAM_API_KEY", deepgram_server.api_key)
    return deepgram_server.api_key


def tts(server: DeepgramServer, **fields: object) -> DeepgramTTS:
    choice = {"provider": "deepgram", "base_url": server.origin, **fields}
    return DeepgramTTS(TTSProvider.model_validate(choice))


async def test_streams_headerless_linear16_before_the_response_ends(
    deepgram_server: DeepgramServer, key: str
) -> None:
    deepgram_server.gate = asyncio.Event()  # the rest of the body waits until the first chunk is in
    speaker = tts(
        deepgram_server, voice="aura-2-andromeda-en", options={"sample_rate": "16000", "speed": "1.1"}
    )
    chunks: list[bytes] = []
    async with asyncio.timeout(10):
        async for pcm in speaker.synthesize(TEXT):
            if not chunks:
                assert not deepgram_server.gate.is_set()
                deepgram_server.gate.set()
            chunks.append(pcm)

    assert speaker.sample_rate == 16000
    assert len(chunks) > 1
    assert b"".join(chunks) == await espeak_pcm(TEXT, 16000)  # no WAV header in front
    speak = deepgram_server.last("/v1/speak")
    assert speak.authorized
    assert speak.body == {"text": TEXT}
    assert speak.query == {
        "model": ["aura-2-andromeda-en"],
        "encoding": ["linear16"],
        "container": ["none"],
        "sample_rate": ["16000"],
        "speed": ["1.1"],
    }


async def test_default_voice_and_rate_with_odd_chunks(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.speech_chunk_bytes = 999
    speaker = tts(deepgram_server)
    chunks = [pcm async for pcm in speaker.synthesize("odd")]
    assert speaker.sample_rate == 24000
    assert all(len(c) % 2 == 0 for c in chunks)
    assert b"".join(chunks) == await espeak_pcm("odd", 24000)
    assert deepgram_server.last("/v1/speak").query["model"] == ["aura-2-thalia-en"]


async def test_closing_mid_speech_closes_the_http_response(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.chunk_interval = 0.05
    speech = tts(deepgram_server).synthesize(TEXT)
    assert await anext(speech)
    await speech.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(deepgram_server.disconnected.wait(), 5)


async def test_wrong_key(deepgram_server: DeepgramServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-bad-key-5")
    with pytest.raises(ProviderError, match="HTTP 401 INVALID_AUTH") as err:
        [pcm async for pcm in tts(deepgram_server).synthesize(TEXT)]
    assert "dg-bad-key-5" not in str(err.value)


async def test_server_error(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.status = 500
    with pytest.raises(ProviderError, match="HTTP 500"):
        [pcm async for pcm in tts(deepgram_server).synthesize(TEXT)]


async def test_dropped_mid_stream(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.drop_after_chunks = 2
    got: list[bytes] = []
    with pytest.raises(ProviderError, match="deepgram speak"):
        async for pcm in tts(deepgram_server).synthesize(TEXT):
            got.append(pcm)
    assert sum(map(len, got)) == 2 * deepgram_server.speech_chunk_bytes


async def test_slow_first_byte_times_out(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.first_byte_delay = 5.0
    with pytest.raises(ProviderError, match="timed out"):
        [pcm async for pcm in tts(deepgram_server, timeout_seconds=0.3).synthesize(TEXT)]


async def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg")
    choice = TTSProvider(provider="deepgram", base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError, match="connection failed"):
        [pcm async for pcm in DeepgramTTS(choice).synthesize(TEXT)]
