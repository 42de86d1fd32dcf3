"""Bounded conversations and typed input (pure parts): whole turns dropped oldest first, turn ids go on."""

from __future__ import annotations

import pytest

from agent_pod.conversation import HISTORY_TRIMMED, ChatMessage, ToolCall, last_turn_number, trim_history
from agent_pod.pipeline.input_limits import MAX_QUEUED_TURNS, InputRefused, check_text


def turn(n: int, words: str = "hi", tool: bool = False) -> list[ChatMessage]:
    tid = f"turn-{n}"
    messages = [ChatMessage(role="user", content=f"{words} {n}", turn_id=tid)]
    if tool:
        call = ToolCall(id=f"c{n}", name="lookup", arguments='{"q": 1}')
        messages += [
            ChatMessage(role="assistant", content="Let me check.", tool_calls=[call], turn_id=tid),
            ChatMessage(role="tool", content='{"ok": true}', tool_call_id=f"c{n}", turn_id=tid),
        ]
    messages.append(ChatMessage(role="assistant", content=f"answer {n}", turn_id=tid))
    return messages


def history(count: int, **kwargs) -> list[ChatMessage]:
    return [m for n in range(1, count + 1) for m in turn(n, **kwargs)]


def test_a_history_within_its_limits_is_left_alone():
    messages = history(5)
    kept, dropped = trim_history(messages, max_turns=5, max_chars=10_000)
    assert kept is messages and dropped == 0


def test_the_oldest_turns_go_whole_and_a_marker_says_so():
    kept, dropped = trim_history(history(8, tool=True), max_turns=3, max_chars=10_000)
    assert dropped == 5
    assert kept[0] == ChatMessage(role="system", content=HISTORY_TRIMMED)
    assert [m.turn_id for m in kept[1:] if m.role == "user"] == ["turn-6", "turn-7", "turn-8"]
    # every tool call still has its result
    calls = {c.id for m in kept for c in m.tool_calls}
    assert calls == {m.tool_call_id for m in kept if m.role == "tool"} == {"c6", "c7", "c8"}


def test_trimming_again_keeps_one_marker():
    once, _ = trim_history(history(6), max_turns=3, max_chars=10_000)
    again, dropped = trim_history([*once, *turn(7)], max_turns=3, max_chars=10_000)
    assert dropped == 1
    assert [m.role for m in again].count("system") == 1
    assert [m.turn_id for m in again if m.role == "user"] == ["turn-5", "turn-6", "turn-7"]


def test_characters_bound_the_history_but_the_newest_turn_always_stays():
    long = "x" * 3000
    kept, dropped = trim_history(history(10, words=long), max_turns=100, max_chars=7000)
    assert dropped == 8 and sum(len(m.content) for m in kept[1:]) <= 7000
    alone, dropped = trim_history(history(2, words=long), max_turns=100, max_chars=1000)
    assert dropped == 1 and [m.turn_id for m in alone[1:]] == ["turn-2", "turn-2"]


def test_turn_numbers_go_on_after_a_trim():
    kept, _ = trim_history(history(9), max_turns=2, max_chars=10_000)
    assert last_turn_number(kept) == 9
    assert last_turn_number([ChatMessage(role="user", content="x")] * 3) == 3  # ids from before turn ids
    assert last_turn_number([]) == 0


def test_typed_input_is_bounded_in_size_and_in_queued_turns():
    check_text("x" * 100, max_chars=100, queued_turns=0)
    with pytest.raises(InputRefused) as too_long:
        check_text("x" * 101, max_chars=100, queued_turns=0)
    assert too_long.value.code == "INVALID_ARGUMENT" and too_long.value.reason == "text_size"
    assert "101 characters" in str(too_long.value)
    with pytest.raises(InputRefused) as queued:
        check_text("hello", max_chars=100, queued_turns=MAX_QUEUED_TURNS)
    assert queued.value.code == "RESOURCE_EXHAUSTED"
