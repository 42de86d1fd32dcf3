"""Runs of a scenario summed up (passed, flaky, latency) and the whole eval's report model."""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, computed_field

from .grading import ScenarioResult


class ScenarioOutcome(BaseModel):
    """Every run of one scenario. It passes only if all runs pass; runs that disagree make it flaky."""

    suite: str
    scenario: str
    category: str | None = None
    severity: str = "medium"
    tags: list[str] = []
    runs: list[ScenarioResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed_runs(self) -> int:
        return sum(1 for r in self.runs if r.passed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return bool(self.runs) and self.passed_runs == len(self.runs)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def flake_rate(self) -> float:
        """The share of runs whose outcome differs from the majority's."""
        return flake_rate([r.passed for r in self.runs])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def flaky(self) -> bool:
        return self.flake_rate > 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def p95_latency_ms(self) -> float | None:
        """95th percentile of the pod's response latency over every answered turn of every run."""
        return percentile(
            (
                t.response_latency_ms
                for r in self.runs
                for t in r.record.turns
                if t.response_latency_ms is not None
            ),
            95,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def first_failure(self) -> str | None:
        for run in self.runs:
            for check in run.failures:
                return f"{check.where}: {check.kind}: {check.message}"
        return None


class CategorySummary(BaseModel):
    passed: int = 0
    total: int = 0


class JudgeStats(BaseModel):
    model: str
    asked: int = 0
    cache_hits: int = 0


class EvalReport(BaseModel):
    target: str
    suites: list[str]
    duration_seconds: float
    judge: JudgeStats | None = None
    outcomes: list[ScenarioOutcome]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return len(self.outcomes)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.passed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def categories(self) -> dict[str, CategorySummary]:
        """Passed/total scenarios per category (uncategorised ones under "none")."""
        summary: dict[str, CategorySummary] = {}
        for o in self.outcomes:
            entry = summary.setdefault(o.category or "none", CategorySummary())
            entry.total += 1
            entry.passed += int(o.passed)
        return dict(sorted(summary.items()))

    @property
    def failed(self) -> list[ScenarioOutcome]:
        return [o for o in self.outcomes if not o.passed]


def flake_rate(outcomes: list[bool]) -> float:
    if not outcomes:
        return 0.0
    passes = sum(outcomes)
    return min(passes, len(outcomes) - passes) / len(outcomes)


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def outcomes_of(results: Iterable[ScenarioResult]) -> list[ScenarioOutcome]:
    """Runs grouped per (suite, scenario), in the order scenarios first appear."""
    grouped: dict[tuple[str, str], list[ScenarioResult]] = {}
    for result in results:
        grouped.setdefault((result.suite, result.scenario), []).append(result)
    outcomes = []
    for (suite, name), runs in grouped.items():
        runs.sort(key=lambda r: r.run)
        first = runs[0]
        outcomes.append(
            ScenarioOutcome(
                suite=suite,
                scenario=name,
                category=first.category,
                severity=first.severity,
                tags=first.tags,
                runs=runs,
            )
        )
    return outcomes
