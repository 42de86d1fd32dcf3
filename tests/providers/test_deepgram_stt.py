"""DeepgramSTT through the real deepgram-sdk (listen v1 WebSocket) against the local Deepgram server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from agent_pod.config import STTProvider
from agent_pod.providers.base import ProviderError, STTStream, Transcript
from agent_pod.providers.deepgram_stt import DeepgramSTT
from tests.support.net import free_port
from tests.support.wait import async_wait_for
from tests.wire.deepgram_server import DeepgramServer
from tests.wire.speech import espeak_pcm

FRAME = 640  # 20 ms at 16 kHz
SECOND = 32000  # bytes of one second at 16 kHz


@pytest.fixture
def key(deepgram_server: DeepgramServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEEPGRAM_API_KEY", deepgram_server.api_key)
    return deepgram_server.api_key


@pytest.fixture
async def speech() -> bytes:
    return await espeak_pcm("book a table for two", 16000)


def stt(server: DeepgramServer, **fields: object) -> DeepgramSTT:
    options = {k: fields.pop(k) for k in ("keepalive_seconds", "finalize_grace_seconds") if k in fields}
    choice = {"provider": "deepgram", "base_url": server.origin, **fields}
    return DeepgramSTT(STTProvider.model_validate(choice), **options)  # type: ignore[arg-type]


def seconds(pcm: bytes, n: float) -> bytes:
    """``pcm`` cut or padded with silence to exactly ``n`` seconds."""
    size = int(n * SECOND)
    return pcm[:size].ljust(size, b"\0")


async def say(stream: STTStream, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME):
        await stream.push(pcm[i : i + FRAME])
    await stream.finalize()


async def until_final(events: AsyncIterator[Transcript]) -> list[Transcript]:
    got = []
    async with asyncio.timeout(10):
        async for t in events:
            got.append(t)
            if t.final:
                return got
    raise AssertionError("events ended without a final transcript")


async def test_partials_then_final_with_the_listen_parameters(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.recognizer.script("book a table for two")
    stream = await stt(deepgram_server, model="nova-3", vocabulary=["Bella Napoli", "table"]).open_stream()
    try:
        await say(stream, speech)
        got = await until_final(stream.events())
    finally:
        await stream.aclose()

    partials = [t.text for t in got if not t.final]
    assert partials[:3] == ["book", "book a", "book a table"]  # one more word per interim result
    assert got[-1] == Transcript("book a table for two", final=True)
    listen = deepgram_server.last("/v1/listen")
    assert listen.authorized
    assert listen.audio_bytes == len(speech)
    assert {k: v for k, v in listen.query.items() if k != "keyterm"} == {
        "model": ["nova-3"],
        "encoding": ["linear16"],
        "sample_rate": ["16000"],
        "channels": ["1"],
        "interim_results": ["true"],
        "language": ["en"],
    }
    assert listen.query["keyterm"] == ["Bella Napoli", "table"]
    assert listen.control[:1] == ["Finalize"]


async def test_older_models_get_keywords_and_options_pass_through(
    deepgram_server: DeepgramServer, key: str
) -> None:
    choice = {
        "model": "nova-2",
        "vocabulary": ["Napoli"],
        "options": {"smart_format": "true", "endpointing": "300"},
    }
    stream = await stt(deepgram_server, **choice).open_stream()
    await stream.aclose()
    query = deepgram_server.last("/v1/listen").query
    assert query["keywords"] == ["Napoli"]
    assert "keyterm" not in query
    assert (query["smart_format"], query["endpointing"]) == (["true"], ["300"])


async def test_segments_finalized_by_endpointing_join_into_one_final(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.segment_seconds = 1.0
    deepgram_server.recognizer.script("book a table", "for two")
    stream = await stt(deepgram_server).open_stream()
    try:
        await say(stream, seconds(speech, 1.5))  # one segment at 1.0 s, the rest on Finalize
        got = await until_final(stream.events())
    finally:
        await stream.aclose()
    assert "book a table" in [t.text for t in got if not t.final]
    assert got[-1] == Transcript("book a table for two", final=True)


async def test_utterances_one_after_another_on_one_socket(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.recognizer.script("first", "second")
    stream = await stt(deepgram_server).open_stream()
    events = stream.events()
    try:
        await say(stream, speech)
        first = (await until_final(events))[-1]
        await say(stream, speech)
        second = (await until_final(events))[-1]
    finally:
        await stream.aclose()
    assert (first.text, second.text) == ("first", "second")
    assert len(deepgram_server.requests) == 1
    assert deepgram_server.last("/v1/listen").control == ["Finalize", "Finalize", "CloseStream"]


async def test_final_without_waiting_when_segments_already_cover_the_audio(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.segment_seconds = 0.5
    deepgram_server.answer_finalize = False
    deepgram_server.recognizer.script("book a", "table")
    stream = await stt(deepgram_server, finalize_grace_seconds=60).open_stream()
    try:
        await say(stream, seconds(speech, 1.0))  # both segments final before Finalize
        assert (await until_final(stream.events()))[-1] == Transcript("book a table", final=True)
    finally:
        await stream.aclose()


async def test_unanswered_finalize_gives_the_segments_at_hand_after_the_grace(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.segment_seconds = 1.0
    deepgram_server.answer_finalize = False
    deepgram_server.recognizer.script("book a table", "never sent")
    stream = await stt(deepgram_server, finalize_grace_seconds=0.2).open_stream()
    try:
        await say(stream, seconds(speech, 1.5))
        assert (await until_final(stream.events()))[-1] == Transcript("book a table", final=True)
    finally:
        await stream.aclose()


async def test_keepalive_holds_a_quiet_socket_open(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.idle_timeout = 1.0
    deepgram_server.recognizer.script("still here")
    stream = await stt(deepgram_server, keepalive_seconds=0.1).open_stream()
    try:

        async def keepalives() -> bool:
            return deepgram_server.last("/v1/listen").control.count("KeepAlive") >= 15

        # 15 keepalives 0.1 s apart outlast the server's 1 s idle timeout
        await async_wait_for(keepalives, timeout=20, what="15 KeepAlive messages")
        await say(stream, speech)
        assert (await until_final(stream.events()))[-1].text == "still here"
    finally:
        await stream.aclose()
    assert "timeout" not in deepgram_server.last("/v1/listen").control


async def test_server_closing_an_idle_socket_fails_the_stream(
    deepgram_server: DeepgramServer, key: str
) -> None:
    deepgram_server.idle_timeout = 0.2
    stream = await stt(deepgram_server, keepalive_seconds=60).open_stream()
    try:
        with pytest.raises(ProviderError, match="1011 NET-0001"):
            await until_final(stream.events())
        with pytest.raises(ProviderError):
            await stream.push(b"\0" * FRAME)
    finally:
        await stream.aclose()


async def test_close_sends_closestream_and_ends_the_events(deepgram_server: DeepgramServer, key: str) -> None:
    stream = await stt(deepgram_server).open_stream()
    events = stream.events()
    await stream.aclose()
    assert [t async for t in events] == []
    assert deepgram_server.last("/v1/listen").control == ["CloseStream"]

    async def server_side_closed() -> bool:
        return deepgram_server.listens_open == 0

    await async_wait_for(server_side_closed, what="the server side of the socket closed")


async def test_connection_dropped_mid_stream(
    deepgram_server: DeepgramServer, key: str, speech: bytes
) -> None:
    deepgram_server.faults.drop_after_chunks = 1
    deepgram_server.recognizer.script("book a table for two")
    stream = await stt(deepgram_server).open_stream()
    try:
        with pytest.raises(ProviderError, match="deepgram listen"):
            await say(stream, speech)
            await until_final(stream.events())
    finally:
        await stream.aclose()


async def test_wrong_key(deepgram_server: DeepgramServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-wrong-key-77")
    with pytest.raises(ProviderError, match="HTTP 401") as err:
        await stt(deepgram_server).open_stream()
    assert "dg-wrong-key-77" not in str(err.value)
    assert deepgram_server.requests[-1].authorized is False


async def test_server_error_on_connect(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.status = 503
    with pytest.raises(ProviderError, match="HTTP 503"):
        await stt(deepgram_server).open_stream()


async def test_slow_handshake_times_out(deepgram_server: DeepgramServer, key: str) -> None:
    deepgram_server.faults.first_byte_delay = 5.0
    with pytest.raises(ProviderError, match="timed out"):
        await stt(deepgram_server, timeout_seconds=0.3).open_stream()


async def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg")
    choice = STTProvider(provider="deepgram", base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError, match="connection failed"):
        await DeepgramSTT(choice).open_stream()


async def test_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="no API key"):
        await DeepgramSTT(STTProvider(provider="deepgram")).open_stream()


async def test_the_key_never_reaches_the_logs(
    deepgram_server: DeepgramServer, key: str, speech: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # websockets logs handshake headers at DEBUG
    deepgram_server.recognizer.script("hello")
    stream = await stt(deepgram_server).open_stream()
    try:
        await say(stream, speech)
        await until_final(stream.events())
    finally:
        await stream.aclose()
    assert "Authorization" in caplog.text or "authorization" in caplog.text.lower()  # headers were logged...
    assert key not in caplog.text  # ...with the key redacted
