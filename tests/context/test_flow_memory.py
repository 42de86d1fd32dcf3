"""Memory follows the call through a flow: every node's LLM is sent the memory blocks, under the agent's
token budget, whatever the node's context policy (two OpenAI wire servers: receptionist and billing)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_pod.config import AgentConfig
from agent_pod.context.blocks import MEMORY_HEADER
from tests.flows.flowspec import BILLING_PROMPT, receptionist_flow
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import tool
from tests.wire.openai_server import ChatReply, OpenAIServer, ScriptedToolCall

PROFILE = {"label": "caller_profile", "description": "Who calls", "readOnly": True, "initial": "Name: Ada"}


@pytest.fixture
async def servers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[OpenAIServer, OpenAIServer]]:
    reception, billing = OpenAIServer(), OpenAIServer()
    monkeypatch.setenv("OPENAI_API_KEY", reception.api_key)
    await reception.start()
    await billing.start()
    try:
        yield reception, billing
    finally:
        await reception.stop()
        await billing.stop()


async def test_every_node_sees_the_memory_even_with_no_history(
    servers: tuple[OpenAIServer, OpenAIServer],
) -> None:
    reception, billing = servers
    base = make_config(
        tools=[tool("book_table", "http://127.0.0.1:9/"), tool("refund", "http://127.0.0.1:9/")]
    )
    llm = base.pipeline.llm.model_copy(update={"provider": "openai", "base_url": reception.base_url})
    flow = receptionist_flow(
        billing={"context": "none", "llm": {"provider": "openai", "baseUrl": billing.base_url}}
    )
    config = AgentConfig.model_validate(
        {
            **base.dump(),
            "pipeline": base.pipeline.model_copy(update={"llm": llm}).dump(),
            "flow": flow,
            "memory": {"blocks": [PROFILE]},
            "context": {"maxTokens": 2000, "targetTokens": 1500},
        }
    )
    reception.script_chat(
        ChatReply(text="Hello, front desk."),
        ChatReply(
            text="One moment.",
            tool_calls=[ScriptedToolCall(id="call_m1", name="go_to_billing", arguments="{}")],
        ),
    )
    async with Harness(config) as h:
        h.session.push_text("hi")
        await h.drain_agent()
        h.session.push_text("a question about my bill")
        await h.drain_agent()
    memory = f"{MEMORY_HEADER}\n<caller_profile> (Who calls)\nName: Ada\n</caller_profile>"
    for request in reception.chat_requests():
        assert request[1] == {"role": "system", "content": memory}
    [first] = billing.chat_requests()
    assert [(m["role"], m["content"]) for m in first] == [
        ("system", f"{BILLING_PROMPT}\n\nExplain the bill."),
        ("system", memory),
        ("user", "a question about my bill"),
    ]
