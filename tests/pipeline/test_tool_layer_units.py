"""The tool layer's pure parts: breaker, confirmation classifier, idempotency keys, run-once, specs."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, McpServerSpec, ToolSpec
from agent_pod.conversation import ChatMessage, Conversation, PendingConfirmation, ToolCall
from agent_pod.tools.breaker import Breaker
from agent_pod.tools.confirmation import answer_counts, classify, question_heard
from agent_pod.tools.idempotency import LocalIdempotencyStore, arguments_sha256, idempotency_key, run_once


def test_breaker_opens_after_consecutive_failures_then_one_trial() -> None:
    b = Breaker(failure_threshold=3, cooldown_seconds=10)
    for t in (0, 1):
        assert b.allow(t)
        b.record(False, t)
    assert b.allow(2)
    b.record(True, 2)  # a success resets the count
    for t in (3, 4, 5):
        assert b.allow(t)
        b.record(False, t)
    assert b.state == "open"
    assert not b.allow(6) and not b.allow(14.9)
    assert b.retry_after(6) == pytest.approx(9)
    assert b.allow(15.0) and b.state == "half_open"
    assert not b.allow(15.1)  # one trial at a time
    b.record(False, 16)
    assert b.state == "open" and not b.allow(25.9)  # the failed trial opens a new cooldown
    assert b.allow(26)
    b.record(True, 26)
    assert b.state == "closed" and b.failures == 0 and b.allow(27) and b.allow(27)


def test_breaker_released_trial_lets_the_next_one_through() -> None:
    b = Breaker(failure_threshold=1, cooldown_seconds=1)
    b.record(False, 0)
    assert b.allow(1) and not b.allow(1)
    b.release()  # the trial was cancelled: it said nothing about the tool
    assert b.state == "half_open" and b.allow(1)


@pytest.mark.parametrize(
    ("words", "answer"),
    [
        ("yes", "yes"),
        ("Yeah.", "yes"),
        ("That's correct", "yes"),
        ("go ahead please", "yes"),
        ("please do", "yes"),
        ("yep, book it", "yes"),
        ("No.", "no"),
        ("don't do that", "no"),
        ("cancel it", "no"),
        ("wait", "no"),
        ("yes, wait a second", "no"),  # a refusal word wins
        ("hold on", "no"),
        ("is that correct?", "unclear"),
        ("what time was it", "unclear"),
        ("", "unclear"),
        ("yesterday I went to know the place", "unclear"),  # words, not substrings
    ],
)
def test_classify_confirmation(words: str, answer: str) -> None:
    assert classify(words) == answer


def test_only_a_later_caller_turn_answers_a_proposal() -> None:
    assert answer_counts("turn-3", "turn-2")
    assert not answer_counts("turn-2", "turn-2")
    assert not answer_counts("turn-1", "turn-2")
    assert not answer_counts("bogus", "turn-2")


def test_idempotency_key_scope() -> None:
    key = idempotency_key("ns", "agent", "s1", "book", {"time": "19:00", "people": 2})
    # Argument order and call ids do not matter: a resumed session re-issuing the booking maps to it.
    assert key == idempotency_key("ns", "agent", "s1", "book", {"people": 2, "time": "19:00"})
    assert key.startswith("vf1-") and len(key) == 44
    others = {
        idempotency_key("ns", "agent", "s2", "book", {"time": "19:00", "people": 2}),
        idempotency_key("ns", "agent", "s1", "cancel", {"time": "19:00", "people": 2}),
        idempotency_key("ns", "agent", "s1", "book", {"time": "19:00", "people": 3}),
        idempotency_key("ns", "other", "s1", "book", {"time": "19:00", "people": 2}),
    }
    assert key not in others and len(others) == 4
    assert arguments_sha256({"b": 1, "a": 2}) == arguments_sha256({"a": 2, "b": 1})


async def test_run_once_runs_concurrent_duplicates_once_and_replays() -> None:
    store = LocalIdempotencyStore()
    calls = 0
    release, running = asyncio.Event(), asyncio.Event()

    async def call() -> str | None:
        nonlocal calls
        calls += 1
        running.set()
        await release.wait()
        return '{"ok": 1}'

    options = {"lease_seconds": 30.0, "ttl_seconds": 60, "wait_seconds": 30.0}
    first = asyncio.create_task(run_once(store, "k", call, **options))  # type: ignore[arg-type]
    second = asyncio.create_task(run_once(store, "k", call, **options))  # type: ignore[arg-type]
    await asyncio.wait_for(running.wait(), 20)
    release.set()
    a, b = await asyncio.gather(first, second)
    assert calls == 1
    assert (a.value, a.replayed) == ('{"ok": 1}', False)
    assert (b.value, b.replayed) == ('{"ok": 1}', True)
    third = await run_once(store, "k", call, **options)  # type: ignore[arg-type]
    assert third.replayed and calls == 1


async def test_run_once_refuses_a_duplicate_after_its_wait_and_retries_after_a_failure() -> None:
    store = LocalIdempotencyStore()
    release = asyncio.Event()
    results: list[str | None] = [None, "done"]

    async def slow() -> str | None:
        await release.wait()
        return results.pop(0)

    first = asyncio.create_task(run_once(store, "k", slow, lease_seconds=30, ttl_seconds=60, wait_seconds=30))
    while (await store.claim("k", "probe", 1))[1]:  # wait until the first holds the lock
        await store.complete("k", "probe", None, 1)
        await asyncio.sleep(0.005)
    refused = await run_once(store, "k", slow, lease_seconds=30, ttl_seconds=60, wait_seconds=0.05)
    assert refused.refused and refused.value is None
    release.set()
    assert (await first).value is None  # failed: nothing stored
    again = await run_once(store, "k", slow, lease_seconds=30, ttl_seconds=60, wait_seconds=1)
    assert again.value == "done" and not again.replayed


def test_side_effects_default_by_method() -> None:
    base = {"name": "t", "description": "d", "endpoint": {"url": "http://x/"}}
    assert ToolSpec.model_validate(base).has_side_effects
    get = {**base, "endpoint": {"url": "http://x/", "method": "GET"}}
    assert not ToolSpec.model_validate(get).has_side_effects
    assert ToolSpec.model_validate({**get, "sideEffects": True}).has_side_effects
    assert not ToolSpec.model_validate({**base, "sideEffects": False}).has_side_effects


def test_bad_tool_layer_spec_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        AgentConfig.model_validate({"mcpServers": [{"name": "Bad_Name", "url": "http://x/mcp"}]})
    assert "mcpServers.0.name" in str(err.value)
    with pytest.raises(ValidationError) as err:
        ToolSpec.model_validate(
            {
                "name": "t",
                "description": "d",
                "endpoint": {"url": "http://x/"},
                "breaker": {"failureThreshold": 0},
            }
        )
    assert "breaker.failureThreshold" in str(err.value)
    spec = McpServerSpec.model_validate({"name": "shop", "url": "http://x/mcp", "allowTools": ["a"]})
    assert spec.allow_tools == ["a"] and spec.side_effects


def test_question_heard_needs_agent_speech_after_the_proposal() -> None:
    call = ToolCall(id="c1", name="book", arguments="{}")
    proposal = [
        ChatMessage(role="user", content="book it"),
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content="{}", tool_call_id="c1"),
    ]
    assert not question_heard(proposal, "c1")
    assert question_heard([*proposal, ChatMessage(role="assistant", content="Shall I book it?")], "c1")
    assert not question_heard([*proposal, ChatMessage(role="assistant", content=" ")], "c1")
    assert not question_heard(proposal[:1], "c1")  # trimmed away: ask again


def test_snapshot_without_a_pending_confirmation_is_readable_by_older_pods() -> None:
    conversation = Conversation(session_id="s", prompt_id="p")
    assert "pendingConfirmation" not in json.loads(conversation.model_dump_json(by_alias=True))
    conversation.pending_confirmation = PendingConfirmation(
        call=ToolCall(id="c", name="book", arguments="{}"), proposed_turn_id="turn-1", proposed_at=1.0
    )
    again = Conversation.model_validate_json(conversation.model_dump_json(by_alias=True))
    assert again.pending_confirmation == conversation.pending_confirmation


async def test_the_local_store_keeps_a_bounded_number_of_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent_pod.tools.idempotency.LOCAL_MAX_RESULTS", 3)
    store = LocalIdempotencyStore()
    for i in range(5):
        assert (await store.claim(f"k{i}", "o", 10))[1]
        await store.complete(f"k{i}", "o", f"v{i}", 60)
    assert [(await store.claim(f"k{i}", "p", 10))[0] for i in range(2, 5)] == ["v2", "v3", "v4"]
    assert (await store.claim("k0", "p", 10)) == (None, True)  # dropped: the oldest went first
