"""OpenAITTS through the real openai SDK against the local OpenAI wire server."""

from __future__ import annotations

import asyncio

import pytest

from agent_pod.config import TTSProvider
from agent_pod.providers.base import ProviderError
from agent_pod.providers.openai_tts import OpenAITTS
from tests.support.net import free_port
from tests.wire.openai_server import OpenAIServer
from tests.wire.speech import espeak_pcm

TEXT = "Your table for two is booked for seven tonight."


@pytest.fixture
def key(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    return openai_server.api_key


def tts(server: OpenAIServer, **fields: object) -> OpenAITTS:
    choice = {"provider": "openai", "base_url": server.base_url, **fields}
    return OpenAITTS(TTSProvider.model_validate(choice))


async def test_first_audio_arrives_before_the_response_ends(openai_server: OpenAIServer, key: str) -> None:
    # The server holds the rest of the body until the client has the first chunk: a client
    # that waited for the whole response would never get it.
    openai_server.gate = asyncio.Event()
    chunks: list[bytes] = []
    async with asyncio.timeout(10):
        async for pcm in tts(openai_server, model="tts-local", voice="nova").synthesize(TEXT):
            if not chunks:
                assert not openai_server.gate.is_set()
                openai_server.gate.set()
            chunks.append(pcm)

    expected = await espeak_pcm(TEXT, 24000)
    assert len(chunks) > 1  # network reads, not the server's writes: the count varies
    assert b"".join(chunks) == expected  # raw 24 kHz PCM16, no header
    sent = openai_server.last("/v1/audio/speech").body
    assert sent == {"input": TEXT, "model": "tts-local", "voice": "nova", "response_format": "pcm"}


async def test_chunks_cut_mid_sample_are_realigned(openai_server: OpenAIServer, key: str) -> None:
    openai_server.speech_chunk_bytes = 4801
    chunks = [pcm async for pcm in tts(openai_server).synthesize("odd sizes")]
    assert all(len(c) % 2 == 0 for c in chunks)
    assert b"".join(chunks) == await espeak_pcm("odd sizes", 24000)


async def test_closing_mid_speech_closes_the_http_response(openai_server: OpenAIServer, key: str) -> None:
    openai_server.faults.chunk_interval = 0.05
    speech = tts(openai_server).synthesize(TEXT)
    assert await anext(speech)
    await speech.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(openai_server.disconnected.wait(), 5)


async def test_wrong_key(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-nope")
    with pytest.raises(ProviderError, match="HTTP 401"):
        [pcm async for pcm in tts(openai_server).synthesize(TEXT)]


async def test_server_error(openai_server: OpenAIServer, key: str) -> None:
    openai_server.faults.status = 503
    with pytest.raises(ProviderError, match="HTTP 503"):
        [pcm async for pcm in tts(openai_server).synthesize(TEXT)]


async def test_dropped_mid_stream(openai_server: OpenAIServer, key: str) -> None:
    openai_server.faults.drop_after_chunks = 2
    got: list[bytes] = []
    with pytest.raises(ProviderError, match="openai speech"):
        async for pcm in tts(openai_server).synthesize(TEXT):
            got.append(pcm)
    assert sum(map(len, got)) == 2 * openai_server.speech_chunk_bytes


async def test_slow_first_byte_times_out(openai_server: OpenAIServer, key: str) -> None:
    openai_server.faults.first_byte_delay = 5.0
    with pytest.raises(ProviderError, match="timed out"):
        [pcm async for pcm in tts(openai_server, timeout_seconds=0.3).synthesize(TEXT)]


async def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    choice = TTSProvider(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ProviderError, match="connection failed"):
        [pcm async for pcm in OpenAITTS(choice).synthesize(TEXT)]
