"""Running suites against a target: every selected scenario, ``repeat`` times, a few calls at once;
each run is judged (when a judge is configured), graded and summed up into an EvalReport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from .driver import ScenarioCall
from .grading import ScenarioResult, grade, judge_requests
from .judge import Judge
from .outcome import EvalReport, outcomes_of
from .scenario import Mode, Scenario, ScenarioSettings, Suite
from .targets import EvalTarget


class RunOptions(BaseModel):
    parallel: int = Field(default=4, ge=1, description="Calls in flight at once.")
    mode: Mode | None = Field(default=None, description="Overrides every scenario's mode.")
    repeat: int | None = Field(default=None, ge=1, description="Overrides every scenario's repeat.")
    categories: list[str] = Field(default=[], description="Only scenarios of these categories.")
    tags: list[str] = Field(default=[], description="Only scenarios with one of these tags.")


def selected(scenario: Scenario, options: RunOptions) -> bool:
    if options.categories and scenario.category not in options.categories:
        return False
    return not options.tags or any(tag in options.tags for tag in scenario.tags)


def effective_settings(suite: Suite, scenario: Scenario, options: RunOptions) -> ScenarioSettings:
    settings = suite.settings(scenario)
    overrides = {k: v for k, v in (("mode", options.mode), ("repeat", options.repeat)) if v is not None}
    return settings.model_copy(update=overrides)


async def run_scenario(
    suite: Suite,
    scenario: Scenario,
    settings: ScenarioSettings,
    target: EvalTarget,
    run: int = 0,
    judge: Judge | None = None,
) -> ScenarioResult:
    """One run: the call, the judge's verdicts it needs, the grade."""
    record = await ScenarioCall(scenario, settings, target.address, target.api_key).run()
    verdicts = await judge.verdicts(judge_requests(scenario, record)) if judge is not None else None
    return grade(
        scenario,
        settings,
        record,
        suite=suite.suite,
        run=run,
        prompt_text=target.prompt_text,
        verdicts=verdicts,
    )


async def run_evals(
    suites: list[Suite],
    target: EvalTarget,
    options: RunOptions | None = None,
    judge: Judge | None = None,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> EvalReport:
    """Every selected scenario of ``suites`` against ``target``; ``on_result`` sees each run as it ends."""
    options = options or RunOptions()
    started = time.monotonic()
    slots = asyncio.Semaphore(options.parallel)

    async def one(suite: Suite, scenario: Scenario, settings: ScenarioSettings, run: int) -> ScenarioResult:
        async with slots:
            result = await run_scenario(suite, scenario, settings, target, run, judge)
        if on_result is not None:
            on_result(result)
        return result

    jobs = []
    for suite in suites:
        for scenario in suite.scenarios:
            if not selected(scenario, options):
                continue
            settings = effective_settings(suite, scenario, options)
            jobs += [one(suite, scenario, settings, run) for run in range(settings.repeat)]
    results = await asyncio.gather(*jobs)
    return EvalReport(
        target=target.description,
        suites=[s.suite for s in suites],
        duration_seconds=round(time.monotonic() - started, 3),
        judge=judge.stats if judge is not None else None,
        outcomes=outcomes_of(results),
    )
