"""What a specialist's LLM is sent (context policies, summaries, functions): two OpenAI wire servers (the real
openai SDK on both sides), one for the receptionist, one for the billing specialist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig
from agent_pod.context.summary import SUMMARY_INSTRUCTIONS
from agent_pod.flows.graph import SUMMARY_HEADER
from tests.flows.flowspec import BILLING_PROMPT, RECEPTION_PROMPT, receptionist_flow
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import tool
from tests.wire.openai_server import ChatReply, OpenAIServer, ScriptedToolCall

BILLING = f"{BILLING_PROMPT}\n\nExplain the bill."


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


def brief(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in messages]


@pytest.mark.parametrize("policy", ["full", "summary", "none"])
async def test_specialist_receives_the_history_its_policy_allows(
    servers: tuple[OpenAIServer, OpenAIServer], policy: str
) -> None:
    reception, billing = servers
    base = make_config(
        tools=[tool("book_table", "http://127.0.0.1:9/"), tool("refund", "http://127.0.0.1:9/")]
    )
    pipeline = base.pipeline.model_copy(
        update={
            "llm": base.pipeline.llm.model_copy(update={"provider": "openai", "base_url": reception.base_url})
        }
    )
    flow = receptionist_flow(
        billing={"context": policy, "llm": {"provider": "openai", "baseUrl": billing.base_url}}
    )
    config = AgentConfig.model_validate({**base.dump(), "pipeline": pipeline.dump(), "flow": flow})
    reception.script_chat(
        ChatReply(text="Hello, front desk."),
        ChatReply(
            text="One moment.",
            tool_calls=[ScriptedToolCall(id="call_h1", name="go_to_billing", arguments="{}")],
        ),
    )
    async with Harness(config) as h:
        h.session.push_text("hi, I am Ada")
        await h.drain_agent()
        h.session.push_text("a question about my bill")
        await h.drain_agent()
        h.session.push_text("why so much")
        await h.drain_agent()

    # The receptionist was offered its transition functions, never the billing node's tools.
    offered = [t["function"]["name"] for t in reception.last("/v1/chat/completions").body["tools"]]
    assert offered == ["go_to_billing", "go_to_booking"]
    assert reception.chat_requests()[0][0]["content"] == RECEPTION_PROMPT
    assert len(reception.chat_requests()) == 2  # the turn after the handoff went to billing only

    sent = billing.chat_requests()
    handoff_turn = [
        ("user", "hi, I am Ada"),
        ("assistant", "Hello, front desk."),
        ("user", "a question about my bill"),
        ("assistant", "One moment."),
        ("tool", '{"handed_over_to": "billing"}'),
    ]
    if policy == "full":
        assert [brief(m) for m in sent[:1]] == [[("system", BILLING), *handoff_turn]]
    elif policy == "none":
        # livekit#4899: nothing of the receptionist's turns (or its tool calls) is replayed.
        assert brief(sent[0]) == [("system", BILLING), ("user", "a question about my bill")]
    else:
        summary_request, answer = sent[0], sent[1]
        assert summary_request[0]["content"] == SUMMARY_INSTRUCTIONS.format(max_words=120)
        assert "user: hi, I am Ada" in summary_request[1]["content"]
        assert "[tool call] go_to_billing({})" in summary_request[1]["content"]
        summary = f"You said: {summary_request[1]['content']}"  # the wire server's echo
        assert brief(answer) == [
            ("system", BILLING),
            ("system", f"{SUMMARY_HEADER}\n{summary}"),
            ("user", "a question about my bill"),
        ]
        # The summary is made once and kept (in the snapshot) for the node's next turns.
        assert len(sent) == 3 and brief(sent[2])[1] == ("system", f"{SUMMARY_HEADER}\n{summary}")
    # Billing's next turn: it hears its own answer of the handoff turn, and under "none" still nothing
    # of what came before it.
    assert [m["role"] for m in sent[-1][-2:]] == ["assistant", "user"]
    assert sent[-1][-1]["content"] == "why so much"
    assert any("hi, I am Ada" in (m.get("content") or "") for m in sent[-1]) is (policy != "none")


async def test_a_summary_that_fails_gives_the_full_history_and_is_tried_again(
    servers: tuple[OpenAIServer, OpenAIServer],
) -> None:
    reception, billing = servers
    base = make_config(
        tools=[tool("book_table", "http://127.0.0.1:9/"), tool("refund", "http://127.0.0.1:9/")]
    )
    llm = base.pipeline.llm.model_copy(update={"provider": "openai", "base_url": reception.base_url})
    flow = receptionist_flow(
        billing={"context": "summary", "llm": {"provider": "openai", "baseUrl": billing.base_url}}
    )
    config = AgentConfig.model_validate(
        {**base.dump(), "pipeline": base.pipeline.model_copy(update={"llm": llm}).dump(), "flow": flow}
    )
    reception.script_chat(
        ChatReply(text="Hello, front desk."),
        ChatReply(
            text="One moment.",
            tool_calls=[ScriptedToolCall(id="call_h2", name="go_to_billing", arguments="{}")],
        ),
    )
    failures = REGISTRY.get_sample_value("voicefleet_flow_summary_failures_total") or 0.0
    async with Harness(config) as h:
        h.session.push_text("hi, I am Ada")
        await h.drain_agent()
        billing.faults.status = 500  # the summary request fails; the answer after it does not
        h.session.push_text("a question about my bill")
        await h.drain_agent()
        conv = h.session.conversation
        assert conv.flow is not None and conv.flow.node == "billing" and conv.flow.summary is None
        h.session.push_text("why so much")
        await h.drain_agent()
        assert not h.session.ended and not h.of_type("error")
        assert conv.flow.summary is not None and conv.flow.summary.startswith("You said:")

    assert (REGISTRY.get_sample_value("voicefleet_flow_summary_failures_total") or 0.0) == failures + 1
    sent = billing.chat_requests()
    assert [r.authorized for r in billing.requests] == [True] * len(billing.requests)
    # The failed summary (500), the answer with the full history, then the summary and the answer of the
    # next turn.
    assert len(sent) == 4
    assert ("user", "hi, I am Ada") in brief(sent[1])
    assert sent[2][0]["content"] == SUMMARY_INSTRUCTIONS.format(max_words=120)
    assert brief(sent[3])[1][1].startswith(SUMMARY_HEADER)


async def test_a_function_the_node_does_not_offer_moves_nothing(
    servers: tuple[OpenAIServer, OpenAIServer],
) -> None:
    """A model that calls another node's transition function gets an unknown-tool error, and the call
    stays where it is."""
    reception, _ = servers
    base = make_config(
        tools=[tool("book_table", "http://127.0.0.1:9/"), tool("refund", "http://127.0.0.1:9/")]
    )
    llm = base.pipeline.llm.model_copy(update={"provider": "openai", "base_url": reception.base_url})
    config = AgentConfig.model_validate(
        {
            **base.dump(),
            "pipeline": base.pipeline.model_copy(update={"llm": llm}).dump(),
            "flow": receptionist_flow(),
        }
    )
    reception.script_chat(
        ChatReply(tool_calls=[ScriptedToolCall(id="call_x", name="back_to_reception", arguments="{}")]),
    )
    async with Harness(config) as h:
        h.session.push_text("take me back")
        await h.drain_agent()
        conv = h.session.conversation
        assert conv.flow is not None and conv.flow.node == "reception" and conv.flow.moves == []
        assert [e.state for e in h.of_type("tool")] == ["started", "invalid_arguments"]
        assert "unknown tool 'back_to_reception'" in h.of_type("tool")[-1].error
        assert not h.session.ended
    # The model heard about the error and answered (the wire server echoes the tool message).
    assert reception.chat_requests()[-1][-1]["role"] == "tool"
