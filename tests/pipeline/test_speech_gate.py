"""The speech gate: hold mode around tool calls, and filler speech while slow tools run.

The main LLM is the scripted one and tools run against the real local tool
server. Whether text was released before the model decided is read at the
moment the model hands over its tool call (an observer around the real
provider), not from timings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig, ToolSpec, ToolSpeechSpec
from agent_pod.conversation import ChatMessage
from agent_pod.providers.base import LLM, LLMChunk
from agent_pod.providers.registry import build_providers
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import ToolServer, tool

PREAMBLE = "I have booked that for you. It is all done."
BOOK_RULE = {
    "match": "book",
    "say": PREAMBLE,
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
    "then": "Your confirmation is {result[confirmation]}.",
}
CHECK_RULE = {
    "match": "check",
    "say": "Let me check.",
    "tool": "book_table",
    "arguments": {"time": "19:00", "people": 2},
    "then": "All checked.",
}
# Tokens are paced so the generation yields to the rest of the session between them, as a real model does.
PACED = {"token_delay_ms": "5"}


class Observed:
    """The real LLM, with ``probe()`` taken whenever it hands over a chunk (before the gate sees it)."""

    def __init__(self, llm: LLM, probe: Callable[[], Any]) -> None:
        self.name = llm.name
        self._llm = llm
        self._probe = probe
        self.at_text: list[Any] = []
        self.at_tool_call: list[Any] = []

    async def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        async for chunk in self._llm.stream(messages, tools):
            (self.at_tool_call if chunk.tool_call else self.at_text).append(self._probe())
            yield chunk


def configure(config: AgentConfig, **tool_speech: Any) -> AgentConfig:
    config.pipeline.tool_speech = ToolSpeechSpec.model_validate(tool_speech)
    return config


def observed_harness(config: AgentConfig) -> tuple[Harness, Observed]:
    providers = build_providers(config.pipeline)
    holder: list[Harness] = []

    def released() -> str:
        turn = holder[0].session._current
        return turn.text if turn is not None else ""

    observer = Observed(providers.llm[0], released)
    providers.llm = [observer]
    holder.append(Harness(config, providers))
    return holder[0], observer


def agent_texts(h: Harness) -> list[str]:
    return [e.text for e in h.of_type("agent_text")]


def fillers_total() -> float:
    return REGISTRY.get_sample_value("voicefleet_fillers_total") or 0.0


async def test_stream_mode_speaks_the_preamble_before_the_model_has_decided():
    async with ToolServer() as server:
        config = configure(
            make_config(
                rules=[BOOK_RULE], llm_options=PACED, tools=[tool("book_table", server.url("/book"))]
            ),
            mode="stream",
        )
        h, observer = observed_harness(config)
        async with h:
            h.session.push_text("book a table")
            await h.drain_agent()
    # The control case of the next test: the first sentence was already on its way to TTS.
    assert observer.at_tool_call[0] == "I have booked that for you."


async def test_hold_mode_speaks_the_preamble_only_once_the_tool_call_is_decided():
    async with ToolServer() as server:
        config = configure(
            make_config(
                rules=[BOOK_RULE], llm_options=PACED, tools=[tool("book_table", server.url("/book"))]
            ),
            mode="hold",
            preamble="speak",
        )
        h, observer = observed_harness(config)
        async with h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert observer.at_tool_call == [""]  # nothing released while the model was deciding
            msgs = h.session.conversation.messages
            assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert msgs[1].content == PREAMBLE and msgs[1].tool_calls[0].name == "book_table"
            assert msgs[3].content == "Your confirmation is BK-19:00."
            assert h.session.turn_records[-1].sent_to_tts == f"{PREAMBLE} Your confirmation is BK-19:00."
            # The preamble is spoken before the tool runs: its text event precedes the tool's start.
            kinds = [e.type for e in h.events]
            first_text = next(i for i, e in enumerate(h.events) if e.type == "agent_text" and e.text)
            assert first_text < kinds.index("tool")
        assert len(server.calls("/book")) == 1


async def test_hold_mode_drops_the_preamble_under_preamble_drop():
    async with ToolServer() as server:
        config = configure(
            make_config(
                rules=[BOOK_RULE], llm_options=PACED, tools=[tool("book_table", server.url("/book"))]
            ),
            preamble="drop",
        )
        async with Harness(config) as h:
            h.session.push_text("book a table")
            await h.drain_agent()
            assert not any("booked" in t for t in agent_texts(h))
            msgs = h.session.conversation.messages
            assert msgs[1].content == "" and msgs[1].tool_calls
            assert msgs[3].content == "Your confirmation is BK-19:00."
            record = h.session.turn_records[-1]
            assert record.sent_to_tts == record.played_text == "Your confirmation is BK-19:00."
        assert len(server.calls("/book")) == 1


async def test_hold_mode_releases_a_tool_less_answer_at_the_end_and_rounds_without_tools_stream():
    story_rule = {"match": "weather", "reply": "It is sunny today. Tomorrow it will rain."}
    async with ToolServer() as server:
        with_tools = configure(
            make_config(
                rules=[story_rule], llm_options=PACED, tools=[tool("book_table", server.url("/book"))]
            )
        )
        h, observer = observed_harness(with_tools)
        async with h:
            h.session.push_text("what is the weather")
            await h.drain_agent()
            assert observer.at_text[-1] == ""  # held to the stream's end: tools were offered
            assert h.session.conversation.messages[-1].content == "It is sunny today. Tomorrow it will rain."
    h, observer = observed_harness(configure(make_config(rules=[story_rule], llm_options=PACED)))
    async with h:
        h.session.push_text("what is the weather")
        await h.drain_agent()
        assert observer.at_text[-1] == "It is sunny today."  # no tools offered: streamed as it came
        assert h.session.conversation.messages[-1].content == "It is sunny today. Tomorrow it will rain."


async def test_a_slow_tool_gets_a_filler_recorded_as_played_and_fillers_rotate():
    async with ToolServer() as server:
        config = configure(
            make_config(
                rules=[CHECK_RULE],
                # Read-only: the second turn's identical call must reach the server again (no stored result).
                tools=[tool("book_table", server.url("/hang"), timeoutSeconds=60, sideEffects=False)],
            ),
            fillerAfterMs=50,
            fillers=["One moment.", "Still checking."],
        )
        before = fillers_total()
        async with Harness(config) as h:
            for turn_id, filler in (("turn-1", "One moment."), ("turn-2", "Still checking.")):
                h.session.push_text("please check")
                await h.until(
                    lambda f=filler: h.session._current is not None and h.session._current.text.endswith(f),
                    what=f"filler {filler!r} while the tool hangs",
                )
                assert len(server.calls("/hang")) == int(turn_id[-1])  # the tool is still running
                server.release.set()
                await h.drain_agent()
                server.release.clear()
                msgs = [m for m in h.session.conversation.messages if m.turn_id == turn_id]
                assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant"]
                assert msgs[1].content == f"Let me check. {filler}"
                assert msgs[3].content == "All checked."
                assert h.session.turn_records[-1].played_text == f"Let me check. {filler} All checked."
        assert fillers_total() - before == 2


async def test_a_fast_tool_gets_no_filler():
    async with ToolServer() as server:
        config = configure(
            make_config(rules=[CHECK_RULE], tools=[tool("book_table", server.url("/book"))]),
            fillerAfterMs=10000,  # far beyond a loopback tool call, whatever the load
            fillers=["One moment."],
        )
        before = fillers_total()
        async with Harness(config) as h:
            h.session.push_text("please check")
            await h.drain_agent()
            assert h.session.turn_records[-1].played_text == "Let me check. All checked."
            assert not any("moment" in t for t in agent_texts(h))
        assert fillers_total() == before


async def test_a_filler_cut_short_by_barge_in_records_its_played_part():
    filler = "One moment please, I am looking that up for you right now."
    async with ToolServer() as server:
        config = configure(
            make_config(
                rules=[CHECK_RULE], tools=[tool("book_table", server.url("/hang"), timeoutSeconds=60)]
            ),
            mode="hold",
            fillerAfterMs=50,
            fillers=[filler],
        )
        async with Harness(config) as h:
            h.session.push_text("please check")
            turn = await h.until(lambda: h.session._current, what="turn")
            # Play the preamble and a few frames into the filler, then the caller types over it.
            await h.until(
                lambda: (h.step(), any(p.text == filler and p.played_samples for p in turn.playback.pieces))[
                    1
                ],
                what="filler playing",
            )
            for _ in range(10):
                assert h.step() is not None
            h.session.push_text("stop")
            interruption = (await h.until(lambda: h.of_type("interruption"), what="interruption"))[0]
            await h.drain_agent()
            assert interruption.played_text.startswith("Let me check. One")
            heard = interruption.played_text.removeprefix("Let me check. ")
            assert filler.startswith(heard) and len(heard) < len(filler)
            [assistant] = [
                m for m in h.session.conversation.messages if m.turn_id == "turn-1" and m.role == "assistant"
            ]
            assert assistant.content == interruption.played_text and assistant.interrupted
            assert assistant.tool_calls  # the call keeps its (cancelled) result
        assert server.calls("/hang")[0].disconnected
