"""`voicefleet eval`: run scenario suites as real calls against an agent, grade them, report.

Exit codes: 0 every scenario passed, 1 a scenario failed, 2 the eval could not run (invalid
suite, bad target, unreachable target, judge not configured)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from ..config import AgentConfig
from ..evals import report as reports
from ..evals.grading import ScenarioResult
from ..evals.judge import Judge, JudgeConfig, JudgeError, default_cache_dir
from ..evals.loader import SuiteError, builtin_packs, load_suites
from ..evals.outcome import EvalReport
from ..evals.runner import RunOptions, run_evals, selected
from ..evals.scenario import suite_json_schema
from ..evals.targets import EvalTarget, TargetError, cluster_target, load_voiceagent_file, local_pod

EXIT_PASSED, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
REACH_SECONDS = 5.0
DEFAULT_JUDGE_URL = "https://api.openai.com/v1"


class EvalUnusable(Exception):
    """The eval cannot run; the message says why (exit code 2)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "eval",
        help="run scenario suites against an agent and grade the calls (docs/evals.md)",
        description="SUITE is a suite file, a directory of *.yaml suites, or a built-in pack "
        f"({', '.join(builtin_packs()) or 'none installed'}). "
        "`voicefleet eval schema` prints the suite JSON Schema.",
    )
    p.add_argument("suites", nargs="*", metavar="SUITE", help="suite files, directories or pack names")
    p.add_argument("--schema", action="store_true", help="print the suite file JSON Schema and exit")
    target = p.add_argument_group("target (one of --agent, --target, --cluster; --cluster may add --target)")
    target.add_argument("--agent", type=Path, metavar="FILE", help="VoiceAgent YAML: run it in a local pod")
    target.add_argument("--target", metavar="HOST:PORT", help="gRPC address of a running pod or Service")
    target.add_argument("--cluster", metavar="NAME", help="a VoiceAgent in the cluster (kubeconfig)")
    target.add_argument(
        "-n", "--namespace", default="default", help="namespace of --cluster (default: default)"
    )
    target.add_argument(
        "--agent-config",
        type=Path,
        metavar="FILE",
        help="with --target: the pod's AgentConfig JSON (as the operator renders it), for the prompt "
        "that leak checks compare against (the operator's eval Jobs pass the canary's)",
    )
    target.add_argument(
        "--api-key",
        default=os.environ.get("VOICEFLEET_API_KEY"),
        help="API key or JWT when the agent requires one (default: $VOICEFLEET_API_KEY)",
    )
    run = p.add_argument_group("running")
    run.add_argument("--parallel", type=int, default=4, help="calls at once (default 4)")
    run.add_argument("--mode", choices=("text", "audio"), help="override every scenario's mode")
    run.add_argument("--repeat", type=int, help="override every scenario's repeat")
    run.add_argument("--category", action="append", default=[], help="only this category (repeatable)")
    run.add_argument("--tag", action="append", default=[], help="only scenarios with this tag (repeatable)")
    out = p.add_argument_group("reports")
    out.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    out.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML")
    out.add_argument(
        "--termination-log", type=Path, metavar="FILE", help="write a summary of at most 4 KiB (Kubernetes)"
    )
    judge = p.add_argument_group("LLM judge (enabled by --judge-model)")
    judge.add_argument("--judge-model", metavar="M", help="chat model that grades `judge` expectations")
    judge.add_argument(
        "--judge-url", default=DEFAULT_JUDGE_URL, metavar="URL", help="OpenAI-compatible API root"
    )
    judge.add_argument(
        "--judge-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="variable holding the judge's API key",
    )
    judge.add_argument(
        "--judge-cache", type=Path, metavar="DIR", help=f"verdict cache (default {default_cache_dir()})"
    )
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    if args.schema or (args.suites == ["schema"] and not Path("schema").exists()):
        print(json.dumps(suite_json_schema(), indent=2))
        return EXIT_PASSED
    try:
        return asyncio.run(evaluate(args))
    except (EvalUnusable, SuiteError, TargetError, JudgeError) as exc:
        print(f"voicefleet eval: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE


async def evaluate(args: argparse.Namespace) -> int:
    options = RunOptions(
        parallel=_positive(args.parallel, "--parallel"),
        mode=args.mode,
        repeat=None if args.repeat is None else _positive(args.repeat, "--repeat"),
        categories=args.category,
        tags=args.tag,
    )
    suites = load_suites(args.suites)  # invalid suites stop everything before any call
    judge = make_judge(args)
    try:
        async with open_target(args) as target:
            suites = [*suites, *target.suites]
            if not suites:
                raise EvalUnusable("no suites: name suite files, directories or packs")
            if not any(selected(s, options) for suite in suites for s in suite.scenarios):
                raise EvalUnusable("no scenario matches the --category/--tag filters")
            await check_reachable(target.address)
            report = await run_evals(suites, target, options, judge, on_result=_progress)
    finally:
        if judge is not None:
            await judge.aclose()
    publish(report, args)
    return EXIT_PASSED if report.passed == report.total else EXIT_FAILED


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise EvalUnusable(f"{flag} must be at least 1, got {value}")
    return value


@asynccontextmanager
async def open_target(args: argparse.Namespace) -> AsyncIterator[EvalTarget]:
    if args.agent and (args.target or args.cluster):
        raise EvalUnusable("--agent runs the agent locally: it does not combine with --target or --cluster")
    if args.agent:
        # The pod runs in this process: its own warnings (compliance audits, ...) are not the report.
        pod_log = logging.getLogger("agent_pod")
        level = pod_log.level
        pod_log.setLevel(logging.ERROR)
        try:
            async with local_pod(load_voiceagent_file(args.agent)) as target:
                yield target
        finally:
            pod_log.setLevel(level)  # the caller's logging is theirs again (tests run this in-process)
    elif args.cluster:
        yield await cluster_target(args.cluster, args.namespace, args.target, args.api_key)
    elif args.target:
        prompt = _config_prompt(args.agent_config) if args.agent_config else None
        yield EvalTarget(
            address=args.target, description=f"gRPC {args.target}", api_key=args.api_key, prompt_text=prompt
        )
    else:
        raise EvalUnusable("no target: give --agent FILE, --target HOST:PORT or --cluster NAME")


def _config_prompt(path: Path) -> str:
    try:
        return AgentConfig.model_validate_json(path.read_text()).prompt_text
    except (OSError, ValueError) as exc:
        raise EvalUnusable(f"--agent-config {path}: {exc}") from exc


async def check_reachable(address: str, within: float = REACH_SECONDS) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), within)
        except TimeoutError:
            raise EvalUnusable(f"cannot reach {address} (no gRPC connection within {within:g} s)") from None


def make_judge(args: argparse.Namespace) -> Judge | None:
    if not args.judge_model:
        return None
    config = JudgeConfig(base_url=args.judge_url, model=args.judge_model, api_key_env=args.judge_key_env)
    if args.judge_cache is not None:
        config.cache_dir = args.judge_cache
    return Judge(config)


def _progress(result: ScenarioResult) -> None:
    verdict = "pass" if result.passed else "FAIL"
    seconds = result.record.duration_ms / 1000
    print(
        f"{verdict}  {result.suite}/{result.scenario} run {result.run + 1} ({seconds:.1f} s)", file=sys.stderr
    )


def publish(report: EvalReport, args: argparse.Namespace) -> None:
    print(reports.table(report))
    if any(o.category for o in report.outcomes):
        print("\nper category:\n" + reports.category_summary(report))
    if args.json:
        reports.write(args.json, reports.to_json(report))
    if args.junit:
        reports.write(args.junit, reports.junit_xml(report))
    if args.termination_log:
        reports.write(args.termination_log, reports.termination_summary(report))
