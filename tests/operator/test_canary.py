"""The canary's children and the operator's reading of what a canary did (pure parts of canary I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_pod.sessions.revision_stats import RevisionCounters
from voicefleet_operator.canary import (
    Baselines,
    EvalJobView,
    command,
    eval_outcome,
    termination_message,
)
from voicefleet_operator.plan import StoreDown
from voicefleet_operator.render import Owner, render, selector_labels
from voicefleet_operator.render_canary import (
    EVAL_FOR_LABEL,
    TRACK_LABEL,
    canary_children,
    eval_job,
    eval_job_name,
)
from voicefleet_operator.rollout import EvalError, EvalFinished, EvalRunning, MetricsUnreadable, Windows
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="clinic", namespace="care", uid="u-1")


def _spec(**extra: Any) -> VoiceAgentSpec:
    rollout = {"strategy": "canary", "eval": {"suites": ["smoke", "redteam"], "timeoutSeconds": 120}}
    return VoiceAgentSpec.model_validate({"rollout": rollout, **extra})


def test_the_canary_is_the_stable_rendering_under_its_own_names_and_selector() -> None:
    stable = render(OWNER, _spec(), "Prompt v2", 4, "redis://redis:6379/0")
    canary = canary_children(OWNER, stable, 2)
    deployment = canary.deployment
    assert deployment["metadata"]["name"] == "clinic-canary"
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {**selector_labels("clinic"), TRACK_LABEL: "canary"}
    # The stable Deployment's selector is immutable and must not change for a canary.
    assert stable.deployment["spec"]["selector"]["matchLabels"] == selector_labels("clinic")
    template = deployment["spec"]["template"]
    assert selector.items() <= template["metadata"]["labels"].items()
    config = next(v for v in template["spec"]["volumes"] if v["name"] == "config")
    assert config["configMap"]["name"] == canary.config_map["metadata"]["name"] == "clinic-canary-config"
    assert canary.config_map["data"] == stable.config_map["data"]
    assert canary.service["spec"]["selector"] == selector
    # Same pods otherwise: same revision (config hash) as the stable rendering of this spec.
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    assert env["VOICEFLEET_REVISION"] == stable.config_hash
    # Rendering never touched the stable objects it started from.
    assert stable.deployment["metadata"]["name"] == "clinic"
    assert TRACK_LABEL not in stable.deployment["spec"]["template"]["metadata"]["labels"]


def test_the_eval_job_runs_the_suites_against_the_canary_service_without_api_access() -> None:
    spec = _spec(nodeSelector={"voicefleet.io/node": "real"})
    stable = render(OWNER, spec, "Prompt v2", 2, "redis://redis:6379/0")
    canary = canary_children(OWNER, stable, 1)
    job = eval_job(OWNER, spec, stable.config_hash, 1_764_000_123.7, canary)
    assert job["metadata"]["name"] == eval_job_name("clinic", stable.config_hash, 1_764_000_123.7)
    assert len(job["metadata"]["name"]) <= 63
    assert job["spec"]["activeDeadlineSeconds"] == 120 and job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"voicefleet.io/node": "real"}
    command = pod["containers"][0]["command"]
    assert command[:2] == ["voicefleet", "eval"]
    assert "/etc/voicefleet/evals/smoke" in command and "/etc/voicefleet/evals/redteam" in command
    assert command[command.index("--target") + 1] == "clinic-canary.care.svc:50051"
    mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert mounted == {"smoke", "redteam", "clinic-canary-config"}
    # Its pods are found by the Job's label, never mistaken for agent pods.
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[EVAL_FOR_LABEL] == "clinic" and "app.kubernetes.io/managed-by" not in labels
    assert [e["name"] for e in pod["containers"][0]["env"]] == ["VOICEFLEET_LOG_FORMAT"]


def test_the_eval_job_gets_its_api_key_from_a_secret_when_the_agent_requires_one() -> None:
    gate = {"suites": ["smoke"], "apiKeySecretRef": {"name": "eval-key", "key": "key"}}
    spec = VoiceAgentSpec.model_validate({"rollout": {"strategy": "canary", "eval": gate}})
    stable = render(OWNER, spec, "Prompt v2", 2, "redis://redis:6379/0")
    job = eval_job(OWNER, spec, stable.config_hash, 1.0, canary_children(OWNER, stable, 1))
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VOICEFLEET_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "eval-key", "key": "key"}}


def test_a_long_agent_name_still_gives_a_valid_job_name() -> None:
    name = eval_job_name("a" * 200, "0123456789abcdef", 1e9)
    assert len(name) <= 63 and name.startswith("a" * 30 + "-eval-01234567-")


def _job(status: dict[str, Any]) -> EvalJobView:
    return EvalJobView.from_body({"status": status})


FAILED_DEADLINE = {
    "failed": 1,
    "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}],
}


@pytest.mark.parametrize(
    ("job", "message", "outcome"),
    [
        (None, None, None),
        (_job({"active": 1}), None, EvalRunning()),
        # A run whose scenarios failed exits 1: still a finished eval with its pass rate.
        (_job({"failed": 1}), json.dumps({"passed": 3, "total": 5}), EvalFinished(3, 5)),
        (_job({"succeeded": 1}), json.dumps({"passed": 5, "total": 5, "failed": []}), EvalFinished(5, 5)),
        (_job(FAILED_DEADLINE), None, EvalError("DeadlineExceeded: too slow")),
        (
            _job({"failed": 1}),
            "Traceback: boom",
            EvalError("the eval Job ended without a summary: Traceback: boom"),
        ),
        (_job({"failed": 1}), None, EvalError("the eval Job failed without a summary")),
        (_job({"succeeded": 1}), "", EvalError("the eval Job succeeded without a summary")),
        (_job({"active": 1}), "not json yet", EvalRunning()),
    ],
)
def test_eval_outcome(job: EvalJobView | None, message: str | None, outcome: object) -> None:
    assert eval_outcome(job, message) == outcome


def test_termination_message_only_once_terminated() -> None:
    running: dict[str, Any] = {"containerStatuses": [{"state": {"running": {}}}]}
    done = {"containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": '{"passed":1}'}}}]}
    assert termination_message(running) is None
    assert termination_message(done) == '{"passed":1}'
    assert termination_message({}) is None


@pytest.mark.parametrize(
    ("annotations", "want"),
    [
        ({}, None),
        ({"voicefleet.io/rollout-command": "Promote "}, "promote"),
        ({"voicefleet.io/rollout-command": "abort"}, "abort"),
        ({"voicefleet.io/rollout-command": "yolo"}, None),
    ],
)
def test_commands(annotations: dict[str, str], want: str | None) -> None:
    assert command(annotations) == want


def _counters(turns: int, failures: int) -> RevisionCounters:
    return RevisionCounters(turns=turns, tool_calls=turns, tool_failures=failures)


def test_windows_are_differences_since_the_last_measurement() -> None:
    baselines = Baselines()
    first = {"can": _counters(10, 1), "sta": _counters(100, 0)}
    windows = baselines.windows(first, "can", "sta")
    assert isinstance(windows, Windows)
    assert (windows.canary.turns, windows.canary.tool_failures, windows.stable.turns) == (10, 1, 100)
    baselines.reset(first)
    later = {"can": _counters(25, 4), "sta": _counters(130, 0)}
    windows = baselines.windows(later, "can", "sta")
    assert isinstance(windows, Windows)
    assert (windows.canary.turns, windows.canary.tool_failures, windows.stable.turns) == (15, 3, 30)
    # A revision Redis has no counters for yet served nothing.
    windows = baselines.windows({}, "can", "sta")
    assert isinstance(windows, Windows) and windows.canary.turns == 0
    down = baselines.windows(StoreDown("redis gone"), "can", "sta")
    assert down == MetricsUnreadable("redis gone")
    baselines.reset(StoreDown("redis gone"))  # an unreadable read never becomes a baseline
    windows = baselines.windows(later, "can", "sta")
    assert isinstance(windows, Windows) and windows.canary.turns == 15
