"""OpenAISTT through the real openai SDK against the local OpenAI wire server."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import pytest

from agent_pod.config import STTProvider
from agent_pod.providers.base import ProviderError, STTStream, Transcript
from agent_pod.providers.openai_stt import OpenAISTT, wav_bytes
from tests.wire.openai_server import OpenAIServer
from tests.wire.speech import espeak_pcm

FRAME = 640  # 20 ms at 16 kHz


@pytest.fixture
def key(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    return openai_server.api_key


@pytest.fixture
async def speech() -> bytes:
    return await espeak_pcm("book a table for two", 16000)


async def open_stream(server: OpenAIServer, **fields: object) -> STTStream:
    choice = {"provider": "openai", "base_url": server.base_url, **fields}
    return await OpenAISTT(STTProvider.model_validate(choice)).open_stream()


async def say(stream: STTStream, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        await stream.push(pcm[i : i + FRAME])
    await stream.finalize()


async def until_final(events: AsyncIterator[Transcript]) -> list[Transcript]:
    got = []
    async for t in events:
        got.append(t)
        if t.final:
            return got
    raise AssertionError("events ended without a final transcript")


async def test_whisper_transcribes_the_utterance_as_a_wav(
    openai_server: OpenAIServer, key: str, speech: bytes
) -> None:
    openai_server.recognizer.script("book a table for two")
    stream = await open_stream(
        openai_server, model="whisper-1", vocabulary=["Bella Napoli", "table"], language="en-GB"
    )
    try:
        await say(stream, speech)
        assert await until_final(stream.events()) == [Transcript("book a table for two", final=True)]
    finally:
        await stream.aclose()
    sent = openai_server.last("/v1/audio/transcriptions")
    assert sent.body["model"] == "whisper-1"
    assert sent.body["prompt"] == "Bella Napoli, table"
    assert sent.body["language"] == "en"
    assert "stream" not in sent.body
    assert sent.audio_bytes == len(wav_bytes(speech, 16000))


async def test_streaming_model_gives_partials_then_the_final(
    openai_server: OpenAIServer, key: str, speech: bytes
) -> None:
    openai_server.recognizer.script("book a table for two")
    stream = await open_stream(openai_server, model="gpt-4o-mini-transcribe")
    try:
        await say(stream, speech)
        got = await until_final(stream.events())
    finally:
        await stream.aclose()
    assert [t.text for t in got if not t.final] == [
        "book",
        "book a",
        "book a table",
        "book a table for",
        "book a table for two",
    ]
    assert got[-1] == Transcript("book a table for two", final=True)
    assert openai_server.last("/v1/audio/transcriptions").body["stream"] == "true"


async def test_utterances_come_back_in_order_and_silence_costs_no_request(
    openai_server: OpenAIServer, key: str, speech: bytes
) -> None:
    openai_server.recognizer.script("first one", "second one")
    stream = await open_stream(openai_server, model="whisper-1")
    events = stream.events()
    try:
        await say(stream, speech)
        await stream.finalize()  # nothing pushed: an empty final, no request
        await say(stream, speech)
        finals = [(await until_final(events))[-1].text for _ in range(3)]
    finally:
        await stream.aclose()
    assert finals == ["first one", "", "second one"]
    assert len(openai_server.requests) == 2


async def test_unscripted_audio_is_really_transcribed(openai_server: OpenAIServer, key: str) -> None:
    """No script: pocketsphinx hears the espeak-ng audio (roughly; the assertion stays honest)."""
    stream = await open_stream(openai_server, model="whisper-1")
    try:
        await say(stream, await espeak_pcm("hello world", 16000))
        final = (await until_final(stream.events()))[-1]
    finally:
        await stream.aclose()
    assert final.text.strip()


async def test_wrong_key_fails_the_events_and_the_stream(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, speech: bytes
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad")
    stream = await open_stream(openai_server, model="whisper-1")
    try:
        await say(stream, speech)
        with pytest.raises(ProviderError, match="HTTP 401"):
            await until_final(stream.events())
        with pytest.raises(ProviderError, match="closed or failed"):
            await stream.push(speech[:FRAME])
    finally:
        await stream.aclose()


async def test_server_error_and_timeout(openai_server: OpenAIServer, key: str, speech: bytes) -> None:
    openai_server.faults.status = 500
    stream = await open_stream(openai_server, model="whisper-1")
    try:
        await say(stream, speech)
        with pytest.raises(ProviderError, match="HTTP 500"):
            await until_final(stream.events())
    finally:
        await stream.aclose()

    openai_server.faults.first_byte_delay = 5.0
    stream = await open_stream(openai_server, model="whisper-1", timeout_seconds=0.3)
    try:
        await say(stream, speech)
        with pytest.raises(ProviderError, match="timed out"):
            await until_final(stream.events())
    finally:
        await stream.aclose()


async def test_malformed_transcript_stream(openai_server: OpenAIServer, key: str, speech: bytes) -> None:
    openai_server.recognizer.script("book a table")
    openai_server.faults.corrupt_after_chunks = 1
    stream = await open_stream(openai_server, model="gpt-4o-transcribe")
    try:
        await say(stream, speech)
        with pytest.raises(ProviderError, match="malformed response"):
            await until_final(stream.events())
    finally:
        await stream.aclose()


def test_wav_bytes_is_a_16_bit_mono_wav() -> None:
    pcm = bytes(range(200))
    with wave.open(io.BytesIO(wav_bytes(pcm, 16000))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.readframes(w.getnframes()) == pcm
