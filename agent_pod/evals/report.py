"""An EvalReport rendered for people (terminal table, per-category summary), for machines (JSON,
JUnit XML) and for Kubernetes (a compact summary that fits a container's termination message)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from .outcome import EvalReport, ScenarioOutcome
from .record import transcript

TERMINATION_LOG_BYTES = 4096  # Kubernetes keeps at most this much of terminationMessagePath
FAILURE_COLUMN_CHARS = 70


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _latency(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f} ms"


def table(report: EvalReport) -> str:
    """One line per scenario: scenario, category, runs, passed, flake, p95 latency, first failure."""
    header = ("scenario", "category", "runs", "passed", "flake", "p95 latency", "first failure")
    rows = [
        (
            f"{o.suite}/{o.scenario}",
            o.category or "-",
            str(len(o.runs)),
            f"{o.passed_runs}/{len(o.runs)}" + ("" if o.passed else " FAIL"),
            f"{o.flake_rate:.0%}" if o.flaky else "-",
            _latency(o.p95_latency_ms),
            _cell(o.first_failure or "", FAILURE_COLUMN_CHARS),
        )
        for o in report.outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{report.passed}/{report.total} scenarios passed ({report.pass_rate:.0%}) "
        f"in {report.duration_seconds:.1f} s"
    )
    skipped = [c for o in report.outcomes for r in o.runs[:1] for c in r.checks if c.status == "skipped"]
    if skipped:
        lines.append(f"{len(skipped)} check(s) skipped: {skipped[0].message}")
    if report.judge is not None:
        j = report.judge
        lines.append(f"judge {j.model}: {j.asked} asked, {j.cache_hits} from cache")
    return "\n".join(lines)


def category_summary(report: EvalReport) -> str:
    """Passed/total scenarios per category (what a red-team run is read by)."""
    width = max((len(c) for c in report.categories), default=8)
    return "\n".join(
        f"{category.ljust(width)}  {s.passed}/{s.total}" + ("" if s.passed == s.total else "  FAIL")
        for category, s in report.categories.items()
    )


def to_json(report: EvalReport) -> str:
    return report.model_dump_json(indent=2)


def junit_xml(report: EvalReport) -> str:
    """A testsuite per suite, a testcase per scenario: <failure> lists the failed checks of every run,
    <skipped> a scenario whose judge checks could not run (and nothing failed)."""
    root = ET.Element("testsuites", name="voicefleet eval", tests=str(report.total))
    root.set("failures", str(report.total - report.passed))
    root.set("time", f"{report.duration_seconds:.3f}")
    for suite_name in dict.fromkeys(o.suite for o in report.outcomes):
        outcomes = [o for o in report.outcomes if o.suite == suite_name]
        suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(outcomes)))
        suite.set("failures", str(sum(1 for o in outcomes if not o.passed)))
        suite.set("skipped", str(sum(1 for o in outcomes if o.passed and _skipped(o))))
        suite.set("time", f"{sum(_seconds(o) for o in outcomes):.3f}")
        for outcome in outcomes:
            _testcase(suite, outcome)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _seconds(outcome: ScenarioOutcome) -> float:
    return sum(r.record.duration_ms for r in outcome.runs) / 1000


def _skipped(outcome: ScenarioOutcome) -> list[str]:
    return [f"{c.where}: {c.message}" for r in outcome.runs[:1] for c in r.checks if c.status == "skipped"]


def _testcase(suite: ET.Element, outcome: ScenarioOutcome) -> None:
    case = ET.SubElement(suite, "testcase", classname=outcome.suite, name=outcome.scenario)
    case.set("time", f"{_seconds(outcome):.3f}")
    if not outcome.passed:
        failed_runs = [r for r in outcome.runs if not r.passed]
        failure = ET.SubElement(case, "failure", message=outcome.first_failure or "failed")
        failure.set("type", "flaky" if outcome.flaky else "failed")
        failure.text = "\n".join(
            f"run {r.run + 1}: {c.where}: {c.kind}: {c.message}" for r in failed_runs for c in r.failures
        )
        ET.SubElement(case, "system-out").text = transcript(failed_runs[0].record)
    elif skipped := _skipped(outcome):
        ET.SubElement(case, "skipped", message=skipped[0]).text = "\n".join(skipped)


def termination_summary(report: EvalReport, limit: int = TERMINATION_LOG_BYTES) -> str:
    """``{"passed", "total", "pass_rate", "failed": [suite/scenario...]}`` in under ``limit`` bytes:
    failed names that do not fit are dropped and counted in ``failed_not_listed``."""
    failed = [f"{o.suite}/{o.scenario}" for o in report.failed]
    head = {"passed": report.passed, "total": report.total, "pass_rate": round(report.pass_rate, 4)}

    def render(listed: int) -> str:
        rest = {"failed_not_listed": len(failed) - listed} if listed < len(failed) else {}
        return json.dumps({**head, "failed": failed[:listed], **rest}, separators=(",", ":"))

    listed = 0
    while listed < len(failed) and len(render(listed + 1).encode()) < limit:
        listed += 1
    return render(listed)


def write(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
