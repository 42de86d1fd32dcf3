"""Session metadata is caller context: the LLM sees it on every turn, on whichever pod serves the call.

Two real pods share a real Redis; their LLM is the openai SDK talking to the local OpenAI-protocol
server, which records every request.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.conversation import CALLER_CONTEXT_HEADER, Conversation, llm_messages
from agent_pod.sessions.admission import parse_snapshot
from tests.support.migration import Fleet
from tests.support.redis import RedisServer
from tests.wire.openai_server import DEFAULT_KEY, OpenAIServer

METADATA = {"caller_name": "Ada", "account": "A-17"}


def test_the_caller_context_follows_the_system_prompt_as_labelled_data() -> None:
    conversation = Conversation(session_id="s", prompt_id="p", metadata={"b": "2", "a": "1"})
    system, context = llm_messages("Be brief.", conversation)
    assert (system.role, system.content) == ("system", "Be brief.")
    assert context.role == "system"
    assert context.content.splitlines() == [CALLER_CONTEXT_HEADER, "- a: 1", "- b: 2"]
    assert [m.content for m in llm_messages("Be brief.", Conversation(session_id="s", prompt_id="p"))] == [
        "Be brief."
    ]


def contexts(server: OpenAIServer) -> list[str]:
    """The caller-context message of every chat request, in order."""
    found = []
    for request in server.requests:
        if request.path.endswith("/chat/completions"):
            messages = request.body["messages"]
            found.append(next((m["content"] for m in messages if CALLER_CONTEXT_HEADER in m["content"]), ""))
    return found


async def test_metadata_reaches_the_llm_and_survives_the_pods_loss(
    tmp_path: Path, redis_server: RedisServer, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    fleet = Fleet(tmp_path, redis_server)
    fleet.config.pipeline.llm = fleet.config.pipeline.llm.model_validate(
        {"provider": "openai", "model": "gpt-local", "baseUrl": openai_server.base_url}
    )
    try:
        a = await fleet.add("pod-a")
        await fleet.add("pod-b")
        async with (
            aiohttp.ClientSession() as http,
            http.post(a.http_url + "/v1/sessions", json={"metadata": METADATA}) as r,
        ):
            assert r.status == 201
            grant = await r.json()
        caller = GrpcCaller(
            grant["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
        )
        await caller.open()
        started = caller.recorder.events[0][2]
        assert not started["resumed"]  # the first snapshot holds only the context: nothing to resume
        caller.send_text("what is my account")
        await caller.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
        assert contexts(openai_server) == [f"{CALLER_CONTEXT_HEADER}\n- account: A-17\n- caller_name: Ada"]
        owner = grant["pod"]
        caller.drop()
        await fleet.crash(owner)
        survivor = next(iter(fleet.pods.values()))
        resume = f"{survivor.http_url}/v1/sessions/{grant['sessionId']}/resume"
        async with (
            aiohttp.ClientSession() as http,
            http.post(resume, json={"resumeToken": grant["resumeToken"]}) as r,
        ):
            assert r.status == 200
            moved = await r.json()
        assert moved["pod"] != owner
        again = GrpcCaller(
            moved["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
        )
        await again.open()
        again.send_text("and my name")
        await again.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
        await again.close()
        await caller.close()
        assert len(contexts(openai_server)) == 2 and contexts(openai_server)[0] == contexts(openai_server)[1]
    finally:
        await fleet.close()


def test_a_snapshot_from_a_newer_revision_resumes_on_an_older_pod() -> None:
    """Fields this pod does not know (written by a newer revision) are ignored, not a lost call."""
    raw = (
        '{"sessionId": "s1", "promptId": "p", "futureField": {"x": 1}, "messages": [{"role": "user", '
        '"content": "hi", "futureFlag": true, "toolCalls": [{"id": "c", "name": "t", "arguments": "{}", '
        '"futureArg": 2}]}]}'
    )
    restored = parse_snapshot("s1", raw)
    assert restored is not None
    assert restored.messages[0].content == "hi"
    assert restored.messages[0].tool_calls[0].name == "t"
    assert parse_snapshot("s1", '{"sessionId": "s1"}') is None  # a required field missing is still refused
