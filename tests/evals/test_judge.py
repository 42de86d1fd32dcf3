"""The LLM judge through the real openai SDK against the local OpenAI wire-protocol server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from agent_pod.evals.grading import JudgeRequest
from agent_pod.evals.judge import Judge, JudgeConfig, JudgeError, cache_key, parse_verdict
from tests.wire.openai_server import DEFAULT_KEY, ChatReply, OpenAIServer

REQUEST = JudgeRequest(
    criterion="The agent offers to book.", transcript="Caller: book\nAgent: Let me book that."
)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ('{"verdict": "pass", "reason": "it offers"}', "pass"),
        ('Sure: {"verdict": "FAIL", "reason": "no offer"} done', "fail"),
        ('{"verdict": "maybe", "reason": "unclear"}', "maybe"),
        ("PASS. The agent offers to book.", "pass"),
        ("It failed the criterion.", "fail"),
        ("pass or fail, hard to say", "maybe"),
        ('{"verdict": "yes"}', "maybe"),
        ("I cannot grade this.", "maybe"),
        ("", "maybe"),
    ],
)
def test_verdicts_are_parsed_leniently_and_anything_else_is_maybe(answer: str, verdict: str) -> None:
    assert parse_verdict(answer).verdict == verdict


def make_judge(server: OpenAIServer, cache: Path, model: str = "judge-1") -> Judge:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=DEFAULT_KEY)
    return Judge(JudgeConfig(base_url=server.base_url, model=model, cache_dir=cache), client=client)


async def test_the_judge_asks_once_and_answers_later_runs_from_its_cache(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.script_chat(ChatReply(text='{"verdict": "pass", "reason": "it offers to book"}'))
    judge = make_judge(openai_server, tmp_path)
    # Two runs asking the same question at once cost one request.
    verdicts = await judge.verdicts([REQUEST, REQUEST])
    assert verdicts[REQUEST].verdict == "pass" and verdicts[REQUEST].reason == "it offers to book"
    [asked] = [r for r in openai_server.requests if r.path == "/v1/chat/completions"]
    assert asked.authorized and asked.body["model"] == "judge-1"
    assert asked.body["response_format"] == {"type": "json_object"}
    assert "The agent offers to book." in asked.body["messages"][1]["content"]
    assert "Agent: Let me book that." in asked.body["messages"][1]["content"]
    assert (tmp_path / f"{cache_key('judge-1', REQUEST)}.json").exists()
    await judge.aclose()

    again = make_judge(openai_server, tmp_path)
    verdict = await again.verdict(REQUEST)
    assert (verdict.verdict, verdict.cached) == ("pass", True)
    assert (again.stats.asked, again.stats.cache_hits) == (0, 1)
    assert len([r for r in openai_server.requests if r.path == "/v1/chat/completions"]) == 1
    # Another model is another question.
    other = make_judge(openai_server, tmp_path, model="judge-2")
    openai_server.script_chat(ChatReply(text="FAIL: it never offers"))
    assert (await other.verdict(REQUEST)).verdict == "fail"
    await again.aclose()
    await other.aclose()


async def test_unreadable_answers_and_errors_are_maybe_and_not_cached(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    judge = make_judge(openai_server, tmp_path)
    openai_server.script_chat(ChatReply(text="I would rather not say."))
    verdict = await judge.verdict(REQUEST)
    assert verdict.verdict == "maybe" and "unreadable judge answer" in verdict.reason
    openai_server.faults.status, openai_server.faults.status_count = 500, 5
    failed = await judge.verdict(REQUEST)
    assert failed.verdict == "maybe" and "judge request failed" in failed.reason
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []  # nothing cached
    await judge.aclose()


def test_a_missing_key_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="NO_SUCH_JUDGE_KEY is not set"):
        Judge(JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key_env="NO_SUCH_JUDGE_KEY"))
