"""The supervisor: the main LLM is the scripted one, the supervisor is the real openai SDK against the
local OpenAI wire server, whose answers are scripted per prompt (the supervisor's prompt holds a marker)
and matched against the draft it is shown."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from agent_pod.config import AgentConfig, SupervisorSpec
from tests.pipeline.harness import Harness, make_config
from tests.pipeline.toolserver import ToolServer, tool
from tests.wire.openai_server import OpenAIServer, PromptRule, PromptScript

MARKER = "SUPERVISOR-UNDER-TEST"
SAFE = "I'm sorry, I can't advise on that."
ADVICE = "This fund has guaranteed returns of twenty percent. You should buy it today."
MAIN_RULES = [
    {"match": "invest", "reply": ADVICE},
    {"match": "money back", "reply": "We will refund you twice over. Anything else?"},
    {"match": "ramble", "reply": "I am not sure about that one."},
    {"match": "savings", "say": "I have moved your savings into crypto.", "tool": "transfer"},
]


def verdict(kind: str, **extra: str) -> str:
    return json.dumps({"verdict": kind, **extra})


SUPERVISOR_RULES = [
    PromptRule(match=r'"draft": "[^"]*guaranteed', reply=verdict("veto", reason="financial promise")),
    PromptRule(match=r'"draft": "[^"]*crypto', reply=verdict("veto", reason="unauthorised transfer")),
    PromptRule(
        match=r'"draft": "[^"]*refund you twice',
        reply=verdict("redirect", text="Let me connect you with our refunds team."),
    ),
    PromptRule(match=r'"draft": "[^"]*not sure', reply="Looks fine to me!"),
    PromptRule(match=".", reply=verdict("allow")),
]


@pytest.fixture
def supervisor_llm(openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    openai_server.script_prompt(PromptScript(marker=MARKER, rules=SUPERVISOR_RULES))
    return {"provider": "openai", "baseUrl": openai_server.base_url, "model": "gpt-4o-mini"}


def supervised(
    llm: dict[str, Any] | None, tools: list[dict[str, Any]] | None = None, **spec: Any
) -> AgentConfig:
    config = make_config(rules=MAIN_RULES, tools=tools)
    # A budget no loaded machine misses, unless a test sets its own.
    spec = {"budgetMs": 10000, **spec}
    config.pipeline.supervisor = SupervisorSpec.model_validate(
        {"llm": llm, "prompt": f"{MARKER}: veto financial promises.", "safeLine": SAFE, **spec}
    )
    return config


def drafts_seen(server: OpenAIServer) -> list[str]:
    """The draft of every supervisor request, in order."""
    return [
        json.loads(r.body["messages"][-1]["content"])["draft"]
        for r in server.requests
        if r.path == "/v1/chat/completions"
    ]


def verdicts_total(verdict: str, source: str) -> float:
    labels = {"verdict": verdict, "source": source}
    return REGISTRY.get_sample_value("voicefleet_supervisor_verdicts_total", labels) or 0.0


def checks_observed() -> float:
    return REGISTRY.get_sample_value("voicefleet_supervisor_check_seconds_count") or 0.0


async def ask(h: Harness, text: str) -> None:
    h.session.push_text(text)
    await h.drain_agent()


def agent_texts(h: Harness) -> str:
    return " | ".join(e.text for e in h.of_type("agent_text"))


async def test_allowed_drafts_are_spoken_as_drafted(openai_server, supervisor_llm):
    before, observed = verdicts_total("allow", "llm"), checks_observed()
    async with Harness(supervised(supervisor_llm)) as h:
        await ask(h, "hello")
        reply = "Hello! How can I help you today?"
        assert h.session.conversation.messages[-1].content == reply
        record = h.session.turn_records[-1]
        assert record.played_text == reply and not record.vetoed
        assert [(c.verdict, c.source) for c in record.supervisor] == [("allow", "llm")] * 2
    assert sorted(drafts_seen(openai_server)) == ["Hello!", "How can I help you today?"]
    system = openai_server.last("/v1/chat/completions").body["messages"][0]["content"]
    assert MARKER in system and '"verdict"' in system  # the pod appends the verdict format
    assert verdicts_total("allow", "llm") - before == 2
    assert checks_observed() - observed == 2


async def test_a_vetoed_draft_is_never_spoken_nor_in_the_history(openai_server, supervisor_llm):
    before = verdicts_total("veto", "llm")
    async with Harness(supervised(supervisor_llm)) as h:
        await ask(h, "should I invest")
        assistant = h.session.conversation.messages[-1]
        assert assistant.role == "assistant" and assistant.content == SAFE
        record = h.session.turn_records[-1]
        assert record.vetoed and record.sent_to_tts == record.played_text == SAFE
        [check] = record.supervisor
        assert (check.verdict, check.source, check.spoken) == ("veto", "llm", SAFE)
        assert "guaranteed" in check.draft and check.reason == "financial promise"
        assert "guaranteed" not in agent_texts(h) and "buy" not in agent_texts(h)
        assert h.of_type("agent_text")[-1].text == SAFE
        # The next turn's LLM request sees the safe line as what was said.
        assert "guaranteed" not in json.dumps([m.dump() for m in h.snapshots[-1].messages])
    # The rest of the vetoed reply is not checked (nor spoken) once the turn is vetoed.
    assert verdicts_total("veto", "llm") - before == 1


async def test_a_redirect_speaks_the_supervisors_text(openai_server, supervisor_llm):
    async with Harness(supervised(supervisor_llm)) as h:
        await ask(h, "I want my money back")
        redirect = "Let me connect you with our refunds team."
        assert h.session.conversation.messages[-1].content == redirect
        record = h.session.turn_records[-1]
        assert record.vetoed and record.played_text == redirect
        assert [(c.verdict, c.spoken) for c in record.supervisor] == [("redirect", redirect)]
        assert "twice" not in agent_texts(h)


@pytest.mark.parametrize(("on_timeout", "spoken"), [("allow", ADVICE), ("block", SAFE)])
async def test_a_late_verdict_applies_on_timeout(openai_server, supervisor_llm, on_timeout, spoken):
    openai_server.faults.first_byte_delay = 5.0  # far past the budget
    before = verdicts_total("allow" if on_timeout == "allow" else "veto", "timeout")
    async with Harness(supervised(supervisor_llm, budgetMs=100, onTimeout=on_timeout)) as h:
        await ask(h, "should I invest")
        record = h.session.turn_records[-1]
        assert record.played_text == spoken
        assert h.session.conversation.messages[-1].content == spoken
        assert {c.source for c in record.supervisor} == {"timeout"}
        # Each check waited its budget, and no longer than the slow server (it was cut off).
        assert all(100 <= c.latency_ms < 5000 for c in record.supervisor)
        assert record.vetoed == (on_timeout == "block")
    counted = verdicts_total("allow" if on_timeout == "allow" else "veto", "timeout") - before
    # Both pieces are checked in parallel; a block at the first cancels the second's check if still running.
    assert counted == 2 if on_timeout == "allow" else 1 <= counted <= 2


@pytest.mark.parametrize(
    ("on_timeout", "spoken"), [("allow", "I am not sure about that one."), ("block", SAFE)]
)
async def test_a_malformed_verdict_counts_as_a_timeout(openai_server, supervisor_llm, on_timeout, spoken):
    async with Harness(supervised(supervisor_llm, onTimeout=on_timeout)) as h:
        await ask(h, "ramble on")
        record = h.session.turn_records[-1]
        assert record.played_text == spoken
        assert [(c.source, c.reason) for c in record.supervisor] == [("malformed", "malformed verdict")]


async def test_deny_rules_veto_without_asking_the_llm(openai_server, supervisor_llm):
    before = verdicts_total("veto", "rule")
    async with Harness(supervised(supervisor_llm, rules=[r"\bguaranteed returns?\b"])) as h:
        await ask(h, "should I invest")
        record = h.session.turn_records[-1]
        assert record.played_text == SAFE
        [check] = record.supervisor
        assert check.source == "rule" and "guaranteed" in check.reason
        await ask(h, "hello")  # an allowed turn still goes to the LLM
    # The vetoed turn's later piece was not sent either: a rule veto stops the turn at once.
    assert sorted(drafts_seen(openai_server)) == ["Hello!", "How can I help you today?"]
    assert verdicts_total("veto", "rule") - before == 1


async def test_rules_alone_need_no_llm():
    async with Harness(supervised(None, rules=["guaranteed"])) as h:
        await ask(h, "hello")
        assert h.session.turn_records[-1].played_text == "Hello! How can I help you today?"
        await ask(h, "should I invest")
        assert h.session.turn_records[-1].played_text == SAFE


async def test_a_vetoed_reply_runs_no_tools(openai_server, supervisor_llm):
    async with ToolServer() as server:
        transfer = tool("transfer", server.url("/book"))
        async with Harness(supervised(supervisor_llm, tools=[transfer])) as h:
            await ask(h, "move my savings")
            record = h.session.turn_records[-1]
            assert record.vetoed and record.played_text == SAFE
            msgs = [m for m in h.session.conversation.messages if m.turn_id == "turn-1"]
            assert msgs[1].content == SAFE and msgs[1].tool_calls  # the call is answered, as cancelled
            assert json.loads(msgs[2].content)["error"] == "cancelled"
        assert server.calls("/book") == []


async def test_barge_in_cancels_pending_checks_and_nothing_of_the_turn_is_spoken(
    openai_server, supervisor_llm
):
    openai_server.faults.first_byte_delay = 30.0  # the verdicts are still pending at the barge-in
    observed = checks_observed()
    async with Harness(supervised(supervisor_llm)) as h:
        h.session.push_text("hello")
        await h.until(lambda: openai_server.requests, what="a supervisor request")
        h.session.push_text("stop")
        # The interrupted turn ends without waiting for its verdicts (30 s away).
        await h.until(lambda: len(h.session.turn_records) == 1, what="turn-1 finished")
        first = h.session.turn_records[0]
        assert first.interrupted and first.sent_to_tts == "" and first.supervisor == []
        turn_1 = [m for m in h.session.conversation.messages if m.turn_id == "turn-1"]
        assert [m.role for m in turn_1] == ["user"]
        assert all(not e.text for e in h.of_type("agent_text") if e.turn_id == "turn-1")
        openai_server.faults.first_byte_delay = 0.0
        await h.drain_agent()
        assert h.session.turn_records[1].played_text == "You said: stop."
    # The cancelled checks never produced a verdict.
    assert checks_observed() - observed == 1
