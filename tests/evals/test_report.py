"""Reports of an eval: terminal table, per-category summary, JSON, JUnit XML, termination log."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from agent_pod.evals import report as reports
from agent_pod.evals.grading import Check, ScenarioResult
from agent_pod.evals.outcome import EvalReport, JudgeStats, flake_rate, outcomes_of, percentile
from agent_pod.evals.record import AgentAnswer, CallRecord, TurnRecord


def result(scenario: str, run: int, passed: bool, *, category: str | None = None, latency: float = 100.0,
           suite: str = "desk", skipped: bool = False) -> ScenarioResult:  # fmt: skip
    checks = [Check(where="turn 1", kind="contains", status="passed", message="said 'hi'")]
    if not passed:
        checks.append(
            Check(where="turn 1", kind="tool", status="failed", message="expected a call of tool 'book'")
        )
    if skipped:
        checks.append(
            Check(where="call", kind="judge", status="skipped", message="no judge configured for 'x'")
        )
    record = CallRecord(
        duration_ms=1500,
        turns=[
            TurnRecord(
                caller_text="hi",
                typed=True,
                answers=[
                    AgentAnswer(
                        turn_id="turn-1", played_text="Hello!", response_latency_ms=latency, final=True
                    )
                ],
            )
        ],
    )
    return ScenarioResult(
        suite=suite, scenario=scenario, category=category, run=run, checks=checks, record=record
    )


def sample_report() -> EvalReport:
    results = [
        result("greets", 0, True, category="basics", latency=50, skipped=True),
        result("books", 1, True, category="booking", latency=300),
        result("books", 0, False, category="booking", latency=200),
        result("books", 2, True, category="booking", latency=900),
        result("refuses", 0, False, category="jailbreak", suite="redteam"),
    ]
    return EvalReport(
        target="test pod",
        suites=["desk", "redteam"],
        duration_seconds=4.5,
        judge=JudgeStats(model="judge-1", asked=3, cache_hits=2),
        outcomes=outcomes_of(results),
    )


def test_runs_are_grouped_and_summed_up() -> None:
    report = sample_report()
    greets, books, refuses = report.outcomes
    assert [r.run for r in books.runs] == [0, 1, 2]
    assert (books.passed, books.flaky, books.passed_runs, books.p95_latency_ms) == (False, True, 2, 900)
    assert books.first_failure == "turn 1: tool: expected a call of tool 'book'"
    assert (greets.passed, greets.flaky, refuses.passed) == (True, False, False)
    assert (report.passed, report.total, report.pass_rate) == (1, 3, 1 / 3)
    assert {k: (v.passed, v.total) for k, v in report.categories.items()} == {
        "basics": (1, 1),
        "booking": (0, 1),
        "jailbreak": (0, 1),
    }
    assert flake_rate([True, True, False, False]) == 0.5 and flake_rate([]) == 0.0
    assert percentile([], 95) is None and percentile(range(1, 101), 95) == 95


def test_terminal_table_and_category_summary() -> None:
    text = reports.table(sample_report())
    header, rule, *rows = text.splitlines()
    assert header.split() == [
        "scenario",
        "category",
        "runs",
        "passed",
        "flake",
        "p95",
        "latency",
        "first",
        "failure",
    ]
    assert set(rule) <= {"-", " "}
    books = next(r for r in rows if r.startswith("desk/books"))
    assert "2/3 FAIL" in books and "33%" in books and "900 ms" in books and "expected a call of tool" in books
    assert "1/3 scenarios passed (33%) in 4.5 s" in text
    assert "1 check(s) skipped: no judge configured for 'x'" in text
    assert "judge judge-1: 3 asked, 2 from cache" in text
    summary = reports.category_summary(sample_report()).splitlines()
    assert [line.split()[:2] for line in summary] == [
        ["basics", "1/1"],
        ["booking", "0/1"],
        ["jailbreak", "0/1"],
    ]
    assert summary[1].endswith("FAIL") and not summary[0].endswith("FAIL")


def test_json_report_round_trips() -> None:
    data = json.loads(reports.to_json(sample_report()))
    assert (data["passed"], data["total"], data["categories"]["booking"]) == (1, 3, {"passed": 0, "total": 1})
    books = data["outcomes"][1]
    assert (books["flaky"], books["passed_runs"], len(books["runs"])) == (True, 2, 3)
    assert books["runs"][0]["record"]["turns"][0]["answers"][0]["played_text"] == "Hello!"


def test_junit_xml_parses_with_failures_and_skips() -> None:
    root = ET.fromstring(reports.junit_xml(sample_report()))
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "3", "2")
    desk, redteam = root.findall("testsuite")
    assert (desk.get("name"), desk.get("tests"), desk.get("failures"), desk.get("skipped")) == (
        "desk",
        "2",
        "1",
        "1",
    )
    greets, books = desk.findall("testcase")
    skipped = greets.find("skipped")
    assert skipped is not None and skipped.get("message") == "call: no judge configured for 'x'"
    failure = books.find("failure")
    assert failure is not None and failure.get("type") == "flaky"
    assert failure.text == "run 1: turn 1: tool: expected a call of tool 'book'"
    out = books.find("system-out")
    assert out is not None and out.text == "Caller: hi\nAgent: Hello!"
    assert books.get("time") == "4.500" and redteam.find("testcase/failure") is not None


def test_termination_summary_stays_under_the_kubernetes_limit() -> None:
    report = sample_report()
    assert json.loads(reports.termination_summary(report)) == {
        "passed": 1,
        "total": 3,
        "pass_rate": 0.3333,
        "failed": ["desk/books", "redteam/refuses"],
    }
    many = EvalReport(
        target="t",
        suites=["s"],
        duration_seconds=1,
        outcomes=outcomes_of(result(f"a-rather-long-scenario-name-{i:04d}", 0, False) for i in range(500)),
    )
    text = reports.termination_summary(many)
    assert len(text.encode()) < 4096
    data = json.loads(text)
    assert data["total"] == 500 and data["failed"][0] == "desk/a-rather-long-scenario-name-0000"
    assert len(data["failed"]) + data["failed_not_listed"] == 500 and data["failed_not_listed"] > 0
