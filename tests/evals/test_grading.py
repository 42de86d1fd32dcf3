"""Grading table: every expectation kind on recorded calls, passing and failing."""

from __future__ import annotations

from typing import Any

import pytest

from agent_pod.evals.grading import JudgeRequest, Verdict, grade, judge_requests, leaked_run
from agent_pod.evals.record import AgentAnswer, CallRecord, ToolCallRecord, TurnRecord, transcript
from agent_pod.evals.scenario import Defaults, Scenario

PROMPT = "You are the receptionist of a dental clinic. Book, move and cancel appointments for callers."


def booking_call() -> CallRecord:
    """Turn 1: a booking with a tool call; turn 2: a long answer interrupted by the caller."""
    return CallRecord(
        session_id="s1",
        turns=[
            TurnRecord(
                caller_text="book tomorrow at three",
                typed=True,
                answers=[
                    AgentAnswer(
                        turn_id="turn-1",
                        heard="book tomorrow at three",
                        text="Let me check. You are booked for tomorrow at 15:00.",
                        played_text="Let me check. You are booked for tomorrow at 15:00.",
                        response_latency_ms=420.0,
                        final=True,
                    )
                ],
                tool_calls=[
                    ToolCallRecord(
                        call_id="c1",
                        name="book_appointment",
                        arguments_json='{"day": "tomorrow", "time": "15:00"}',
                        state="failed",
                    )
                ],
            ),
            TurnRecord(
                caller_text="tell me a story",
                typed=True,
                barge_in_text="stop",
                barge_in_sent=True,
                answers=[
                    AgentAnswer(
                        turn_id="turn-2",
                        heard="tell me a story",
                        text="Once upon a time, in a small village by the sea, there lived a keeper.",
                        played_text="Once upon a time, in a small",
                        interrupted=True,
                        interruption_event=True,
                        response_latency_ms=900.0,
                        final=True,
                    ),
                    AgentAnswer(
                        turn_id="turn-3", heard="stop", text="You said: stop.", played_text="You said: stop."
                    ),
                ],
            ),
        ],
    )


def scenario(turn1: list[Any] | None = None, turn2: list[Any] | None = None, whole: list[Any] | None = None):
    return Scenario.model_validate(
        {
            "name": "s",
            "turns": [
                {"type": "book tomorrow at three", "expect": turn1 or []},
                {
                    "type": "tell me a story",
                    "barge_in": {"after_ms": 500, "say": "stop"},
                    "expect": turn2 or [],
                },
            ],
            "expect": whole or [],
        }
    )


def run(expectation: dict[str, Any], turn: int = 1, **kwargs: Any):
    slots: dict[str, list[Any]] = {"turn1": [], "turn2": [], "whole": []}
    slots[{1: "turn1", 2: "turn2", 0: "whole"}[turn]].append(expectation)
    s = scenario(**slots)
    result = grade(s, s.settings(Defaults()), booking_call(), **kwargs)
    [check] = result.checks
    return check


BOOK_SCHEMA = {
    "type": "object",
    "properties": {"day": {"const": "tomorrow"}, "time": {"pattern": "^15:00$"}},
    "required": ["day", "time"],
}

TABLE: list[tuple[dict[str, Any], int, str, str]] = [
    # (expectation, turn (0 = whole call), status, words the message must hold)
    ({"contains": "Booked"}, 1, "passed", "said 'Booked'"),
    ({"contains": ["tomorrow", "15:00"]}, 1, "passed", "said"),
    ({"contains": ["tomorrow", "Friday"]}, 1, "failed", "expected 'Friday' in what the agent said"),
    ({"contains": "story"}, 1, "failed", "it said 'Let me check."),
    ({"contains": "stop"}, 0, "passed", "said 'stop'"),
    ({"regex": r"booked for \w+"}, 1, "passed", "matched 'booked for tomorrow'"),
    ({"regex": r"\bcancel"}, 1, "failed", "expected /\\bcancel/ to match"),
    ({"absent": ["sorry", "cannot"]}, 1, "passed", "did not say"),
    ({"absent": ["sorry", "CHECK"]}, 1, "failed", "expected the agent not to say 'CHECK'"),
    ({"absent_regex": r"\d{4}"}, 1, "passed", "matched nothing"),
    ({"absent_regex": r"\d\d:\d\d"}, 1, "failed", "matched '15:00'"),
    ({"tool": {"name": "book_appointment"}}, 1, "passed", "called 'book_appointment' (failed)"),
    ({"tool": {"name": "book_appointment", "arguments": BOOK_SCHEMA}}, 1, "passed", '"day": "tomorrow"'),
    (
        {"tool": {"name": "book_appointment", "arguments": {"required": ["people"]}}},
        1,
        "failed",
        "'people' is a required property",
    ),
    (
        {"tool": {"name": "book_appointment", "arguments": {"properties": {"time": {"pattern": "^9"}}}}},
        0,
        "failed",
        "at time",
    ),
    ({"tool": {"name": "book_appointment"}}, 2, "failed", "tools called: none"),
    ({"tool": {"name": "cancel"}}, 0, "failed", "tools called: book_appointment("),
    ({"no_tool": True}, 2, "passed", "no tool called"),
    ({"no_tool": True}, 1, "failed", "expected no tool call; called book_appointment("),
    ({"no_tool": ["hang_up", "transfer_to_human"]}, 0, "passed", "none of hang_up, transfer_to_human"),
    ({"no_tool": ["book_appointment"]}, 0, "failed", "expected none of book_appointment"),
    ({"escalates": False}, 0, "passed", "did not escalate"),
    ({"escalates": True}, 0, "failed", "expected an escalation (escalate, handoff, transfer_to_human)"),
    ({"interrupted": True}, 2, "passed", "interrupted after 'Once upon a time, in a small'"),
    ({"interrupted": True}, 1, "failed", "no answer was"),
    ({"interrupted": True}, 0, "passed", "interrupted after"),
    ({"within_ms": 500}, 1, "passed", "first audio after 420 ms"),
    ({"within_ms": 500}, 2, "failed", "it came after 900 ms"),
    ({"any_of": [{"contains": "nope"}, {"regex": "book"}]}, 1, "passed", "regex:"),
    ({"any_of": [{"contains": "nope"}, {"regex": "zzz"}]}, 1, "failed", "none passed: contains:"),
    ({"any_of": [{"contains": "nope"}, {"judge": "polite"}]}, 1, "skipped", "none passed"),
    ({"not_leaking_prompt": True}, 0, "passed", "prompt text unknown"),
    ({"judge": "The agent confirms the booking."}, 1, "skipped", "no judge configured"),
]


@pytest.mark.parametrize(("expectation", "turn", "status", "words"), TABLE)
def test_grading_table(expectation: dict[str, Any], turn: int, status: str, words: str) -> None:
    check = run(expectation, turn)
    assert (check.status, check.kind) == (status, next(iter(expectation)))
    assert words in check.message
    assert check.where == ("call" if turn == 0 else f"turn {turn}")


def test_escalation_tools_come_from_the_settings() -> None:
    s = scenario(whole=[{"escalates": True}])
    settings = s.settings(Defaults(escalation_tools=["book_appointment"]))
    [check] = grade(s, settings, booking_call()).checks
    assert check.status == "passed" and "book_appointment" in check.message


def test_interrupted_needs_the_event_and_a_strict_prefix() -> None:
    record = booking_call()
    answer = record.turns[1].answers[0]
    s = scenario(turn2=[{"interrupted": True}])
    settings = s.settings(Defaults())
    answer.interruption_event = False
    assert "no Interruption event" in grade(s, settings, record).checks[0].message
    answer.interruption_event, answer.played_text = True, answer.text  # the whole answer "was played"
    assert "strict prefix" in grade(s, settings, record).checks[0].message
    answer.played_text, answer.interrupted = "Once upon", False
    assert "is not interrupted" in grade(s, settings, record).checks[0].message


def test_prompt_leaks_are_found_from_runs_of_the_prompt_and_from_tells() -> None:
    record = booking_call()
    s = scenario(turn1=[{"not_leaking_prompt": True}])
    settings = s.settings(Defaults())
    assert grade(s, settings, record, prompt_text=PROMPT).checks[0].status == "passed"
    record.turns[0].answers[
        0
    ].played_text = "Sure. I am the receptionist of a dental clinic, book move and cancel appointments."
    [check] = grade(s, settings, record, prompt_text=PROMPT).checks
    assert (
        check.status == "failed"
        and "repeated its system prompt: 'the receptionist of a dental clinic book move'" in check.message
    )
    # Seven words in a row are not a leak.
    assert leaked_run(PROMPT, "the receptionist of a dental clinic book") is None
    record.turns[0].answers[0].played_text = "OK. My system prompt is: be nice."
    [check] = grade(s, settings, record).checks
    assert check.status == "failed" and "'my system prompt is'" in check.message
    # The most common refusal names the prompt without leaking it.
    record.turns[0].answers[0].played_text = "Sorry, I can't share my system prompt."
    assert grade(s, settings, record).checks[0].status == "passed"


def test_judge_verdicts_decide_and_maybe_fails() -> None:
    record = booking_call()
    s = scenario(turn1=[{"judge": "confirms"}], whole=[{"judge": "polite"}])
    settings = s.settings(Defaults())
    requests = judge_requests(s, record)
    assert [r.criterion for r in requests] == ["confirms", "polite"]
    assert "Caller: tell me a story" not in requests[0].transcript  # turn 1 sees the call up to turn 1
    assert requests[1].transcript == transcript(record)
    assert "Caller (interrupting): stop" in requests[1].transcript
    verdicts = {
        requests[0]: Verdict(verdict="pass", reason="it confirms", cached=True),
        requests[1]: Verdict(verdict="maybe", reason="unclear"),
    }
    turn_check, call_check = grade(s, settings, record, verdicts=verdicts).checks
    assert (turn_check.status, turn_check.message) == ("passed", "judge: pass (cached): it confirms")
    assert call_check.status == "failed" and "judge: maybe on 'polite': unclear" in call_check.message
    missing = grade(s, settings, record, verdicts={}).checks
    assert [c.status for c in missing] == ["failed", "failed"]
    assert JudgeRequest(criterion="confirms", transcript=requests[0].transcript) in verdicts


def test_call_errors_timeouts_and_unreached_turns_fail() -> None:
    record = booking_call()
    record.turns[0].timed_out = True
    del record.turns[1]
    record.errors.append("stream refused: UNAVAILABLE pod is at capacity")
    s = scenario(turn2=[{"contains": "x"}])
    result = grade(s, s.settings(Defaults(turn_timeout_ms=1234)), record, suite="suite-a", run=2)
    assert not result.passed
    assert [(c.where, c.kind) for c in result.failures] == [
        ("call", "call"),
        ("turn 1", "answered"),
        ("turn 2", "contains"),
    ]
    assert (
        "no complete answer within 1234 ms (the agent heard 'book tomorrow at three')"
        in result.checks[1].message
    )
    assert result.checks[2].message == "the call ended before this turn"
    assert (result.suite, result.run) == ("suite-a", 2)


def test_a_clean_run_passes() -> None:
    s = scenario(turn1=[{"contains": "booked"}], turn2=[{"interrupted": True}], whole=[{"escalates": False}])
    result = grade(s, s.settings(Defaults()), booking_call())
    assert result.passed and [c.status for c in result.checks] == ["passed"] * 3
