"""OpenAILLM through the real openai SDK against the local OpenAI wire server."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agent_pod.config import HTTPEndpoint, LLMProvider, SecretKeyRef, ToolSpec
from agent_pod.conversation import ChatMessage, ToolCall
from agent_pod.providers.base import LLMChunk, ProviderError
from agent_pod.providers.openai_llm import OpenAILLM
from tests.support.net import free_port
from tests.wire.openai_server import ChatReply, OpenAIServer, ScriptedToolCall

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    endpoint=HTTPEndpoint(url="http://127.0.0.1:1/weather"),
)
BOOK = ToolSpec(
    name="book_table",
    description="Book a table.",
    parameters={"type": "object", "properties": {"people": {"type": "integer"}}},
    endpoint=HTTPEndpoint(url="http://127.0.0.1:1/book"),
)
HELLO = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="hello")]


@pytest.fixture
def key(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    return openai_server.api_key


def llm(server: OpenAIServer, **fields: object) -> OpenAILLM:
    choice = {"provider": "openai", "model": "gpt-local", "base_url": server.base_url, **fields}
    return OpenAILLM(LLMProvider.model_validate(choice))


async def collect(it: object) -> list[LLMChunk]:
    return [c async for c in it]  # type: ignore[attr-defined]


async def test_text_streams_in_pieces_with_the_stage_settings(openai_server: OpenAIServer, key: str) -> None:
    openai_server.script_chat(ChatReply(text="Hello there, how can I help?", text_chunk_chars=3))
    chunks = await collect(llm(openai_server, temperature=0.2, max_tokens=55).stream(HELLO, []))

    assert all(c.tool_call is None for c in chunks)
    assert len(chunks) == 10  # 28 characters in pieces of 3
    assert "".join(c.text for c in chunks) == "Hello there, how can I help?"
    sent = openai_server.last("/v1/chat/completions").body
    assert sent["model"] == "gpt-local"
    assert sent["stream"] is True
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 55
    assert "tools" not in sent
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]


async def test_tool_call_arguments_split_over_chunks_are_assembled(
    openai_server: OpenAIServer, key: str
) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius"})
    call = ScriptedToolCall(id="call_w1", name="get_weather", arguments=arguments)
    openai_server.script_chat(ChatReply(text="Let me check.", tool_calls=[call], argument_pieces=6))
    chunks = await collect(llm(openai_server).stream(HELLO, [WEATHER]))

    assert "".join(c.text for c in chunks) == "Let me check."
    calls = [c.tool_call for c in chunks if c.tool_call is not None]
    assert calls == [ToolCall(id="call_w1", name="get_weather", arguments=arguments)]
    assert chunks[-1].tool_call is not None  # the call comes whole, after the text
    tools = openai_server.last("/v1/chat/completions").body["tools"]
    assert tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]


async def test_parallel_tool_calls_with_interleaved_fragments(openai_server: OpenAIServer, key: str) -> None:
    first = ScriptedToolCall(id="call_a", name="get_weather", arguments='{"city": "Oslo"}')
    second = ScriptedToolCall(id="call_b", name="book_table", arguments='{"people": 4}')
    openai_server.script_chat(ChatReply(tool_calls=[first, second], argument_pieces=4, interleave=True))
    chunks = await collect(llm(openai_server).stream(HELLO, [WEATHER, BOOK]))

    assert [c.tool_call for c in chunks] == [
        ToolCall(id="call_a", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="call_b", name="book_table", arguments='{"people": 4}'),
    ]


async def test_history_with_tool_results_is_sent_paired(openai_server: OpenAIServer, key: str) -> None:
    history = [
        *HELLO,
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=[ToolCall(id="c1", name="get_weather", arguments='{"city": "Rome"}')],
        ),
        ChatMessage(role="tool", tool_call_id="c1", content='{"temp": 21}'),
    ]
    chunks = await collect(llm(openai_server).stream(history, [WEATHER]))

    # The unscripted server answers from the last message; a malformed history would get a 400.
    assert "".join(c.text for c in chunks) == 'Done: {"temp": 21}'
    sent = openai_server.last("/v1/chat/completions").body["messages"]
    assert sent[2:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]


async def test_unpaired_tool_call_is_refused_by_the_api_and_fails_over(
    openai_server: OpenAIServer, key: str
) -> None:
    history = [
        *HELLO,
        ChatMessage(role="assistant", tool_calls=[ToolCall(id="c9", name="get_weather", arguments="{}")]),
        ChatMessage(role="user", content="and now?"),
    ]
    with pytest.raises(ProviderError, match="HTTP 400"):
        await collect(llm(openai_server).stream(history, [WEATHER]))


async def test_closing_the_iterator_mid_answer_closes_the_http_stream(
    openai_server: OpenAIServer, key: str
) -> None:
    openai_server.script_chat(ChatReply(text="word " * 200, text_chunk_chars=5))
    openai_server.faults.chunk_interval = 0.02  # a 4 s answer: the client hangs up long before its end
    stream = llm(openai_server).stream(HELLO, [])
    assert (await anext(stream)).text
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(openai_server.disconnected.wait(), 5)
    assert openai_server.disconnects == 1


async def test_cancelling_the_consumer_task_closes_the_http_stream(
    openai_server: OpenAIServer, key: str
) -> None:
    """The barge-in pattern: the task that reads the answer is cancelled."""
    openai_server.script_chat(ChatReply(text="word " * 200, text_chunk_chars=5))
    openai_server.faults.chunk_interval = 0.02
    heard: list[str] = []
    first = asyncio.Event()

    async def speak() -> None:
        async for chunk in llm(openai_server).stream(HELLO, []):
            heard.append(chunk.text)
            first.set()

    task = asyncio.create_task(speak())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(openai_server.disconnected.wait(), 5)
    assert 1 <= len(heard) < 200


async def test_wrong_key_is_a_provider_error_without_the_key(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-secret-123")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderError, match="HTTP 401 invalid_api_key") as err:
        await collect(llm(openai_server).stream(HELLO, []))
    assert "sk-wrong-secret-123" not in str(err.value)
    assert "sk-wrong-secret-123" not in caplog.text
    assert openai_server.requests[-1].authorized is False


async def test_key_from_mounted_secret(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from pathlib import Path

    secret = Path(str(tmp_path)) / "openai-creds"
    secret.mkdir()
    (secret / "apiKey").write_text(openai_server.api_key + "\n")
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-is-ignored")
    ref = SecretKeyRef(name="openai-creds", key="apiKey")
    chunks = await collect(llm(openai_server, credentials_secret_ref=ref).stream(HELLO, []))
    assert "".join(c.text for c in chunks) == "You said: hello"


async def test_server_error_is_a_provider_error_without_retries(
    openai_server: OpenAIServer, key: str
) -> None:
    openai_server.faults.status = 500
    with pytest.raises(ProviderError, match="HTTP 500"):
        await collect(llm(openai_server).stream(HELLO, []))
    assert len(openai_server.requests) == 1  # the fallback chain retries, not the SDK


async def test_connection_refused_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    choice = LLMProvider(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ProviderError, match="connection failed"):
        await collect(OpenAILLM(choice).stream(HELLO, []))


async def test_slow_first_byte_times_out(openai_server: OpenAIServer, key: str) -> None:
    openai_server.faults.first_byte_delay = 5.0
    with pytest.raises(ProviderError, match="timed out"):
        await collect(llm(openai_server, timeout_seconds=0.3).stream(HELLO, []))


async def test_connection_dropped_mid_stream_is_a_provider_error(
    openai_server: OpenAIServer, key: str
) -> None:
    openai_server.script_chat(ChatReply(text="one two three four five six", text_chunk_chars=4))
    openai_server.faults.drop_after_chunks = 3
    got: list[str] = []
    with pytest.raises(ProviderError, match="openai chat stream"):
        async for chunk in llm(openai_server).stream(HELLO, []):
            got.append(chunk.text)
    assert "".join(got) == "one two "  # the text before the drop was passed on


async def test_malformed_event_is_a_provider_error(openai_server: OpenAIServer, key: str) -> None:
    openai_server.script_chat(ChatReply(text="one two three four", text_chunk_chars=4))
    openai_server.faults.corrupt_after_chunks = 2
    with pytest.raises(ProviderError, match="malformed response"):
        await collect(llm(openai_server).stream(HELLO, []))


async def test_no_key_for_the_public_api_fails_without_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="no API key"):
        await collect(OpenAILLM(LLMProvider(provider="openai")).stream(HELLO, []))
