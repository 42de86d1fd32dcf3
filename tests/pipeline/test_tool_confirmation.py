"""The confirmation policy of sensitive tools, through full turns of the scripted LLM against the real
HTTP tool server (which counts what it receives)."""

from __future__ import annotations

import json

import pytest

from agent_pod.config import AgentConfig
from agent_pod.conversation import Conversation
from agent_pod.tools.audit import ToolAuditRecord
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.test_tools import assert_paired, tool_states
from tests.pipeline.toolserver import ToolServer, tool
from tests.wire.openai_server import ChatReply, OpenAIServer, ScriptedToolCall

BOOK_RULE = {
    "match": "book",
    "say": "Let me see.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
    "then": "{result}",
}


def answered_in(record: ToolAuditRecord) -> str:
    """The caller turn whose answer the audit record carries."""
    return record.confirmation.turn_id if record.confirmation is not None else ""


def config(server: ToolServer) -> AgentConfig:
    return make_config(rules=[BOOK_RULE], tools=[tool("book_table", server.url("/book"), confirm=True)])


async def propose(h: Harness) -> None:
    h.session.push_text("book a table for two")
    await h.drain_agent()


async def test_proposal_is_not_executed_and_asks_to_confirm() -> None:
    async with ToolServer() as server, Harness(config(server)) as h:
        await propose(h)
        assert server.calls("/book") == []
        pending = h.session.conversation.pending_confirmation
        assert pending is not None and pending.proposed_turn_id == "turn-1"
        assert json.loads(pending.call.arguments) == {"time": "19:00", "people": 2}
        tool_msg = next(m for m in h.session.conversation.messages if m.role == "tool")
        body = json.loads(tool_msg.content)
        assert body["status"] == "confirmation_required"
        assert body["action"] == "book_table with time=19:00, people=2"
        assert "Ask the caller to confirm" in body["instruction"]
        # The snapshot a resumed call restores carries it.
        assert h.snapshots[-1].pending_confirmation == pending
        [record] = h.session.tool_audit
        assert record.outcome == "awaiting_confirmation" and record.attempts == 0


async def test_yes_runs_the_call_and_the_llm_gets_its_result_in_that_turn() -> None:
    async with ToolServer() as server, Harness(config(server)) as h:
        await propose(h)
        h.session.push_text("Yes, please do.")
        await h.drain_agent()
        [sent] = server.calls("/book")
        assert sent.body == {"time": "19:00", "people": 2} and sent.headers["Idempotency-Key"].startswith(
            "vf1-"
        )
        assert h.session.conversation.pending_confirmation is None
        assert "BK-19:00" in h.of_type("agent_text")[-1].text  # the answer of turn 2 uses the result
        ran = h.session.tool_audit[-1]
        assert ran.confirmation is not None and ran.confirmation.words == "Yes, please do."
        assert ran.confirmation.decision == "yes" and ran.confirmation.at > 0
        assert ran.outcome == "succeeded" and answered_in(ran) == "turn-2" and ran.turn_id == "turn-2"
        messages = h.session.conversation.messages
        assert_paired(messages)
        turn2 = [m.role for m in messages if m.turn_id == "turn-2"]
        assert turn2 == ["user", "assistant", "tool", "assistant"]


async def test_no_declines_and_nothing_is_sent() -> None:
    async with ToolServer() as server, Harness(config(server)) as h:
        await propose(h)
        h.session.push_text("no, cancel that")
        await h.drain_agent()
        assert server.calls("/book") == []
        assert h.session.conversation.pending_confirmation is None
        declined = h.session.tool_audit[-1]
        assert declined.outcome == "declined" and answered_in(declined) == "turn-2"
        tool_msgs = [json.loads(m.content) for m in h.session.conversation.messages if m.role == "tool"]
        assert tool_msgs[-1]["status"] == "declined"
        assert_paired(h.session.conversation.messages)


async def test_unclear_keeps_it_pending_and_the_llm_cannot_run_it_by_calling_again(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    args = json.dumps({"time": "19:00", "people": 2})
    openai_server.script_chat(
        ChatReply(tool_calls=[ScriptedToolCall(name="book_table", arguments=args)]),
        ChatReply(text="Shall I book 19:00 for two?"),
        # The caller is unclear and the model insists: it calls the tool again.
        ChatReply(tool_calls=[ScriptedToolCall(name="book_table", arguments=args)]),
        ChatReply(text="I need a yes to book it."),
        ChatReply(text="Booked."),
    )
    async with ToolServer() as server:
        cfg = config(server)
        cfg.pipeline.llm.provider = "openai"
        cfg.pipeline.llm.base_url = openai_server.base_url
        async with Harness(cfg) as h:
            await propose(h)
            h.session.push_text("hmm, what was the time again?")
            await h.drain_agent()
            assert server.calls("/book") == []
            pending = h.session.conversation.pending_confirmation
            assert pending is not None and pending.proposed_turn_id == "turn-2"
            messages = h.session.conversation.messages
            statuses = [json.loads(m.content).get("status") for m in messages if m.role == "tool"]
            assert statuses == ["confirmation_required", "confirmation_pending", "confirmation_required"]
            assert [r.outcome for r in h.session.tool_audit] == ["awaiting_confirmation"] * 3
            assert_paired(messages)
            h.session.push_text("yes")
            await h.drain_agent()
            assert len(server.calls("/book")) == 1
            assert h.of_type("agent_text")[-1].text == "Booked."
            # The model saw the result in the request of that turn.
            sent = openai_server.last("/v1/chat/completions").body["messages"]
            assert "BK-19:00" in sent[-1]["content"] and sent[-1]["role"] == "tool"


async def test_pending_confirmation_survives_a_resume() -> None:
    async with ToolServer() as server:
        async with Harness(config(server)) as first:
            await propose(first)
        snapshot = Conversation.model_validate_json(first.snapshots[-1].model_dump_json(by_alias=True))
        assert snapshot.pending_confirmation is not None
        async with Harness(config(server), conversation=snapshot) as resumed:
            resumed.session.push_text("yeah go ahead")
            await resumed.drain_agent()
            assert len(server.calls("/book")) == 1
            assert answered_in(resumed.session.tool_audit[-1]) == "turn-2"
            assert resumed.session.conversation.pending_confirmation is None


async def test_an_interrupted_confirmed_call_ends_cancelled_with_a_paired_history() -> None:
    async with ToolServer() as server:
        cfg = make_config(
            rules=[BOOK_RULE],
            tools=[tool("book_table", server.url("/hang"), confirm=True, timeoutSeconds=30)],
        )
        async with Harness(cfg) as h:
            await propose(h)
            h.session.push_text("yes")
            await h.until(lambda: server.calls("/hang"), what="the confirmed call to go out")
            h.session.push_text("hello")  # a typed turn interrupts the agent
            await h.drain_agent()
            await h.until(lambda: not h.session.busy, what="the turns to end")
            states = tool_states(h)  # every call ended exactly once
            assert ("cancelled", 1) in states
            audit = h.session.tool_audit
            assert [r.outcome for r in audit] == ["awaiting_confirmation", "cancelled"]
            assert answered_in(audit[-1]) == "turn-2"
            assert_paired(h.session.conversation.messages)


async def test_a_yes_that_cut_the_agent_off_before_its_question_does_not_run_the_call() -> None:
    async with ToolServer() as server, Harness(config(server)) as h:
        h.session.push_text("book a table for two")
        await h.until(
            lambda: any(e.error == "confirmation_required" for e in h.of_type("tool")), what="the proposal"
        )
        h.session.push_text("yes")  # typed over the agent before any of its audio was heard
        await h.drain_agent()
        await h.until(lambda: not h.session.busy, what="the turns to end")
        assert server.calls("/book") == []
        pending = h.session.conversation.pending_confirmation
        assert pending is not None and pending.proposed_turn_id == "turn-1"
        answer = json.loads([m for m in h.session.conversation.messages if m.role == "tool"][-1].content)
        assert answer["status"] == "confirmation_pending" and "did not hear the question" in answer["message"]
        assert_paired(h.session.conversation.messages)
