"""The lookup agent through the real pipeline and a real HTTP tool server: a lookup at session start
(from session metadata) and one on each caller transcript write into memory in the background; the
turn never waits for them, and the caller's event stream does not carry them."""

from __future__ import annotations

from typing import Any

from agent_pod.config import AgentConfig, MemoryLookup
from agent_pod.context.lookups import lookup_arguments
from agent_pod.conversation import Conversation
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import ToolServer


def lookup_tool(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} lookup",
        "parameters": {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]},
        "endpoint": {"url": url},
        "timeoutSeconds": 60,
        "sideEffects": False,  # lookups only read
    }


def memory_value(conversation: Conversation, label: str) -> str:
    return next(b.value for b in conversation.memory if b.label == label)


def test_arguments_come_from_metadata_or_the_transcript():
    lookup = MemoryLookup.model_validate(
        {
            "tool": "t",
            "block": "b",
            "trigger": "caller_turn",
            "arguments": {"who": "metadata.caller_id", "q": "transcript"},
        }
    )
    assert lookup_arguments(lookup, {"caller_id": "+1"}, "hello") == {"who": "+1", "q": "hello"}
    assert lookup_arguments(lookup, {}, "hello") is None  # a missing field skips the lookup


async def test_lookups_write_memory_in_the_background_while_the_call_goes_on():
    async with ToolServer() as server:
        base = make_config(
            tools=[lookup_tool("crm", server.url("/book")), lookup_tool("slow", server.url("/hang"))]
        )
        memory = {
            "blocks": [
                {"label": "caller_profile", "description": "From the CRM"},
                {"label": "facts", "description": "Found while talking"},
            ],
            "lookups": [
                {
                    "tool": "crm",
                    "block": "caller_profile",
                    "field": "confirmation",
                    "trigger": "session_start",
                    "arguments": {"time": "metadata.caller_id"},
                },
                {
                    "tool": "slow",
                    "block": "facts",
                    "field": "late",
                    "trigger": "caller_turn",
                    "arguments": {"time": "transcript"},
                },
            ],
        }
        config = AgentConfig.model_validate({**base.dump(), "memory": memory})
        start = Conversation(session_id="test-session", prompt_id="p", metadata={"caller_id": "+15550100"})
        async with Harness(config, conversation=start) as h:
            await h.until(
                lambda: any(memory_value(s, "caller_profile") for s in h.snapshots), what="CRM lookup"
            )
            assert memory_value(h.snapshots[-1], "caller_profile") == "BK-+15550100"
            assert server.calls("/book")[0].body == {"time": "+15550100"}

            h.session.push_text("hello")
            await h.drain_agent()
            await h.until(lambda: [e for e in h.of_type("agent_text") if e.final], what="the answer")
            # answered while the lookup of the caller's words still hangs
            [pending] = server.calls("/hang")
            assert pending.body == {"time": "hello"} and memory_value(h.session.conversation, "facts") == ""
            server.release.set()
            await h.until(
                lambda: any(memory_value(s, "facts") == "true" for s in h.snapshots), what="slow lookup"
            )
            assert not h.of_type("tool")  # lookups stay off the caller's event stream


async def test_a_lookup_on_a_tool_with_side_effects_is_left_out():
    async with ToolServer() as server:
        writer = {**lookup_tool("book", server.url("/book")), "sideEffects": True}
        base = make_config(tools=[writer])
        memory = {
            "blocks": [{"label": "facts", "description": "Found while talking"}],
            "lookups": [
                {
                    "tool": "book",
                    "block": "facts",
                    "trigger": "caller_turn",
                    "arguments": {"time": "transcript"},
                }
            ],
        }
        config = AgentConfig.model_validate({**base.dump(), "memory": memory})
        async with Harness(config) as h:
            assert h.session._context.lookups is not None
            h.session.push_text("hello")
            await h.drain_agent()
            await h.until(lambda: [e for e in h.of_type("agent_text") if e.final], what="the answer")
            assert h.session._context.lookups.pending == 0 and server.calls("/book") == []
