"""The wire servers run standalone and are scripted over HTTP (for tests that run pods as processes)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent_pod.config import LLMProvider, STTProvider
from agent_pod.conversation import ChatMessage
from agent_pod.providers.base import ProviderError
from agent_pod.providers.deepgram_stt import DeepgramSTT
from agent_pod.providers.openai_llm import OpenAILLM
from tests.support.net import free_port
from tests.wire.deepgram_server import DeepgramServer
from tests.wire.openai_server import DEFAULT_KEY


@pytest.fixture
async def standalone_openai() -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.wire.openai_server",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f":{port}/v1" in line.decode()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def test_standalone_openai_server_is_scripted_over_http(
    standalone_openai: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    llm = OpenAILLM(LLMProvider(provider="openai", model="m", base_url=f"{standalone_openai}/v1"))
    hello = [ChatMessage(role="user", content="hi")]
    async with aiohttp.ClientSession() as http:
        await http.post(f"{standalone_openai}/_control/chat", json=[{"text": "Scripted over HTTP."}])
        assert "".join([c.text async for c in llm.stream(hello, [])]) == "Scripted over HTTP."

        await http.post(f"{standalone_openai}/_control/faults", json={"status": 502})
        with pytest.raises(ProviderError, match="HTTP 502"):
            [c async for c in llm.stream(hello, [])]

        async with http.get(f"{standalone_openai}/_control/requests") as resp:
            seen = await resp.json()
    assert [r["path"] for r in seen] == ["/v1/chat/completions", "/v1/chat/completions"]


async def test_openai_server_answers_per_prompt_version(
    standalone_openai: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two revisions of an agent get their own behaviour from one server, by a marker in their prompt."""
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    llm = OpenAILLM(LLMProvider(provider="openai", model="m", base_url=f"{standalone_openai}/v1"))
    good = {"marker": "[v2]", "rules": [{"match": "book", "tool": "book", "arguments": {"day": "monday"}}]}
    bad = {"marker": "[v3]", "rules": [{"match": "book", "reply": "I cannot do that."}]}
    async with aiohttp.ClientSession() as http:
        for script in (good, bad):
            async with http.post(f"{standalone_openai}/_control/prompts", json=script) as resp:
                assert resp.status == 200

    async def answer(prompt: str, text: str) -> tuple[str, list[str]]:
        messages = [ChatMessage(role="system", content=prompt), ChatMessage(role="user", content=text)]
        chunks = [c async for c in llm.stream(messages, [])]
        said = "".join(c.text for c in chunks)
        return said, [c.tool_call.arguments for c in chunks if c.tool_call is not None]

    assert await answer("Clinic [v2]", "book me in") == ("", ['{"day": "monday"}'])
    assert await answer("Clinic [v3]", "book me in") == ("I cannot do that.", [])
    assert await answer("Clinic [v1]", "book me in") == ("You said: book me in", [])


async def test_deepgram_transcripts_scripted_over_http(
    deepgram_server: DeepgramServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", deepgram_server.api_key)
    async with aiohttp.ClientSession() as http:
        await http.post(f"{deepgram_server.origin}/_control/transcripts", json=["over http"])
    stream = await DeepgramSTT(
        STTProvider(provider="deepgram", base_url=deepgram_server.origin)
    ).open_stream()
    events = stream.events()
    try:
        await stream.push(b"\0" * 6400)
        await stream.finalize()
        final = None
        async with asyncio.timeout(10):
            async for t in events:
                if t.final:
                    final = t.text
                    break
        assert final == "over http"
    finally:
        await stream.aclose()
