"""Tool calls against a real local HTTP tool server."""

from __future__ import annotations

import json

import pytest

from agent_pod.config import ToolSpec
from agent_pod.conversation import ChatMessage, ToolCall
from agent_pod.pipeline.events import TERMINAL_TOOL_STATES, ToolEvent
from agent_pod.pipeline.tools import ToolRunner, parse_arguments
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import ToolServer, tool
from tests.support.audio import espeak_utterance, frames, silence, trim_silence

BOOK_RULE = {
    "match": "book",
    "say": "Let me book that.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
    "then": "You are booked, confirmation {result[confirmation]}.",
}


def assert_paired(messages: list[ChatMessage]) -> None:
    """Every assistant tool call is answered by exactly one tool message, right after its message."""
    for i, msg in enumerate(messages):
        if msg.role == "assistant" and msg.tool_calls:
            answers: list[str] = []
            j = i + 1
            while j < len(messages) and messages[j].role == "tool":
                answers.append(messages[j].tool_call_id or "")
                j += 1
            assert sorted(answers) == sorted(c.id for c in msg.tool_calls)
        if msg.role == "tool":
            assert any(c.id == msg.tool_call_id for m in messages[:i] for c in m.tool_calls)


def tool_states(h: Harness) -> list[tuple[str, int]]:
    """(state, attempt) of every ToolEvent, after checking each started call ended exactly once."""
    events = h.of_type("tool")
    for call_id in {e.call_id for e in events}:
        terminal = [e for e in events if e.call_id == call_id and e.state in TERMINAL_TOOL_STATES]
        assert len(terminal) == 1, f"tool call {call_id} has {len(terminal)} terminal states"
    return [(e.state, e.attempt) for e in events]


async def test_tool_call_succeeds_and_answer_uses_result(tmp_path, monkeypatch):
    secret = tmp_path / "tool-auth" / "headers"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"Authorization": "Bearer t0ken"}))
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path))
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/book"))
        spec["endpoint"]["headersSecretRef"] = {"name": "tool-auth", "key": "headers"}
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("please book a table")
            await h.drain_agent()
            [call] = server.calls("/book")
            assert call.method == "POST" and call.body == {"time": "19:00", "people": 2}
            assert call.headers["Authorization"] == "Bearer t0ken"
            assert call.headers["X-Voicefleet-Session"] == "test-session"
            assert tool_states(h) == [("started", 1), ("succeeded", 1)]
            assert json.loads(h.of_type("tool")[-1].result_json)["confirmation"] == "BK-19:00"
            msgs = h.session.conversation.messages
            assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert msgs[1].content == "Let me book that." and msgs[1].tool_calls[0].name == "book_table"
            assert msgs[3].content == "You are booked, confirmation BK-19:00."
            assert (
                h.of_type("agent_text")[-1].played_text
                == "Let me book that. You are booked, confirmation BK-19:00."
            )
            assert_paired(msgs)


async def test_get_tool_sends_arguments_as_query():
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/book"))
        spec["endpoint"]["method"] = "GET"
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("book it")
            await h.drain_agent()
            [call] = server.calls("/book")
            assert call.method == "GET" and call.query == {"time": "19:00", "people": "2"}


async def test_retries_after_server_error():
    async with ToolServer(fail_first=1) as server:
        spec = tool("book_table", server.url("/flaky"), retries=2)
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert len(server.calls("/flaky")) == 2
            assert tool_states(h) == [("started", 1), ("started", 2), ("succeeded", 2)]
            assert h.session.conversation.messages[-1].content == "You are booked, confirmation OK-FLAKY."


async def test_retries_run_out_and_call_fails():
    async with ToolServer(fail_first=10) as server:
        spec = tool("book_table", server.url("/flaky"), retries=1)
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert len(server.calls("/flaky")) == 2
            assert tool_states(h)[-1] == ("failed", 2)
            assert "HTTP 500" in h.of_type("tool")[-1].error
            assert (
                h.session.conversation.messages[-1].content
                == "Sorry, I could not complete the book_table request."
            )
            assert_paired(h.session.conversation.messages)


async def test_timeout_ends_in_timed_out():
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/hang"), timeoutSeconds=0.2, retries=0)
        async with Harness(make_config(rules=[BOOK_RULE], tools=[spec])) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert tool_states(h) == [("started", 1), ("timed_out", 1)]
            msgs = h.session.conversation.messages
            assert json.loads(msgs[2].content)["error"] == "timed_out"
            assert msgs[-1].content == "Sorry, I could not complete the book_table request."
            assert_paired(msgs)


async def test_invalid_arguments_are_repaired_by_the_llm():
    rule = {
        **BOOK_RULE,
        "arguments": {"time": "7pm", "people": 2},
        "repaired_arguments": {"time": "19:00", "people": 2},
    }
    async with ToolServer() as server:
        config = make_config(rules=[rule], tools=[tool("book_table", server.url("/book"))])
        async with Harness(config) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert [c.body for c in server.calls("/book")] == [{"time": "19:00", "people": 2}]
            states = tool_states(h)
            assert states == [("started", 1), ("invalid_arguments", 0), ("started", 1), ("succeeded", 1)]
            invalid = h.of_type("tool")[1]
            assert "time" in invalid.error and "7pm" in invalid.arguments_json
            msgs = h.session.conversation.messages
            assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
            assert json.loads(msgs[2].content)["error"] == "invalid_arguments"
            assert msgs[-1].content == "You are booked, confirmation BK-19:00."
            assert_paired(msgs)


@pytest.mark.parametrize("arguments", [{"time": "7pm", "people": 2}, "{not json", {"people": 40}])
async def test_repairs_run_out(arguments):
    rule = {**BOOK_RULE, "arguments": arguments}  # no repaired_arguments: the LLM repeats its mistake
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/book"), maxArgumentRepairs=1)
        async with Harness(make_config(rules=[rule], tools=[spec])) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert server.seen == []
            terminal = [s for s, _ in tool_states(h) if s != "started"]
            assert terminal == ["invalid_arguments", "invalid_arguments"]  # first try + one repair
            msgs = h.session.conversation.messages
            assert msgs[-1].content == "Sorry, I could not complete the book_table request."
            assert json.loads(msgs[-2].content)["hint"] == "do not call this tool again"
            assert_paired(msgs)


async def test_interruption_during_tool_call_cancels_it_and_no_retry_goes_out():
    async with ToolServer() as server:
        spec = tool("book_table", server.url("/gate"), retries=3, timeoutSeconds=30)
        config = make_config(vad="webrtc", transcript="never mind", rules=[BOOK_RULE], tools=[spec])
        async with Harness(config) as h:
            h.session.push_text("book a table")
            await h.until(lambda: server.calls("/gate"), what="tool request at the server")
            await h.drain_agent_audio()
            for caller_frame in frames(trim_silence(espeak_utterance("never mind")) + silence(600)):
                h.step(caller_frame)
            await h.until(lambda: h.of_type("interruption"), what="interruption")
            await h.until(
                lambda: len([e for e in h.of_type("user_transcript") if e.final]) == 2, what="turn 2"
            )
            await h.drain_agent()
            # The in-flight request was abandoned, and no retry was sent after the interruption.
            await h.until(lambda: server.calls("/gate")[0].disconnected, what="server saw the disconnect")
            server.gate.set()
            assert len(server.calls("/gate")) == 1
            assert tool_states(h) == [("started", 1), ("cancelled", 1)]
            msgs = h.session.conversation.messages
            assert [m.role for m in msgs] == ["user", "assistant", "tool", "user", "assistant"]
            assert msgs[1].content == "Let me book that." and msgs[1].interrupted
            assert json.loads(msgs[2].content)["error"] == "cancelled"
            assert msgs[-1].content == "You said: never mind."
            assert_paired(msgs)


async def test_interrupted_call_never_sends_its_request():
    async with ToolServer() as server:
        spec = ToolSpec.model_validate(tool("book_table", server.url("/book")))
        events: list[ToolEvent] = []
        runner = ToolRunner([spec], "s", events.append)
        call = ToolCall(id="c1", name="book_table", arguments='{"time": "19:00", "people": 2}')
        args, outcome = runner.check(call, 1)
        assert outcome is None and args is not None
        result = await runner.execute(call, args, interrupted=lambda: True)
        await runner.aclose()
        assert result.state == "cancelled" and server.seen == []
        assert [e.state for e in events] == ["started", "cancelled"]


def test_argument_validation_messages():
    spec = ToolSpec.model_validate(tool("book_table", "http://127.0.0.1:9/x"))
    assert parse_arguments(spec, '{"time": "19:00", "people": 2}') == ({"time": "19:00", "people": 2}, "")
    assert "not valid JSON" in parse_arguments(spec, "{oops")[1]
    assert "JSON object" in parse_arguments(spec, "[1, 2]")[1]
    assert parse_arguments(spec, '{"time": "19:00", "people": 99}')[1].startswith("people:")
    assert "required" in parse_arguments(spec, "")[1]
