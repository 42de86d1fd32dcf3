"""Eval targets: VoiceAgent files turned into local pods, suites held in ConfigMaps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent_pod.cli.eval import EvalUnusable, check_reachable
from agent_pod.evals.loader import SuiteError, load_suite
from agent_pod.evals.runner import run_evals
from agent_pod.evals.targets import (
    TargetError,
    agent_config_from_voiceagent,
    load_voiceagent_file,
    local_pod,
    local_pod_config,
    service_address,
    suites_from_config_maps,
)
from tests.support.pod import REPO

EXAMPLE = REPO / "examples" / "voiceagent.yaml"
SUITE = "suite: {name}\nscenarios:\n  - name: a\n    turns: [{{type: hello}}]\n"


def test_the_example_voiceagent_becomes_the_config_its_pods_run() -> None:
    config = load_voiceagent_file(EXAMPLE)
    assert config.agent == "receptionist" and config.prompt_text.startswith("You are the receptionist")
    assert [t.name for t in config.tools] == ["book_appointment"]
    local = local_pod_config(config)
    assert not local.transport.webrtc.enabled and not local.auth.required
    assert local.pipeline == config.pipeline and local.prompt_id == config.prompt_id
    assert service_address("receptionist", "clinic", config) == "receptionist.clinic.svc:50051"


def test_the_example_suite_is_valid() -> None:
    suite = load_suite(REPO / "examples" / "evals" / "receptionist.yaml")
    assert suite.suite == "receptionist" and len(suite.scenarios) >= 4


def test_voiceagent_documents_that_cannot_run_locally_are_refused() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    with pytest.raises(TargetError, match=re.escape("x.yaml: kind is 'Deployment'")):
        agent_config_from_voiceagent({**document, "kind": "Deployment"}, "x.yaml")
    with pytest.raises(TargetError, match=re.escape("metadata.name is missing")):
        agent_config_from_voiceagent({**document, "metadata": {}}, "x.yaml")
    from_config_map = {**document, "spec": {**document["spec"], "prompt": {"configMapRef": {"name": "p"}}}}
    with pytest.raises(TargetError, match=re.escape("spec.prompt.configMapRef: the prompt is in")):
        agent_config_from_voiceagent(from_config_map, "x.yaml")
    typo = {**document, "spec": {**document["spec"], "replicaz": 2}}
    with pytest.raises(TargetError, match="invalid VoiceAgent spec"):
        agent_config_from_voiceagent(typo, "x.yaml")


def test_missing_voiceagent_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read VoiceAgent"):
        load_voiceagent_file(tmp_path / "nope.yaml")


def test_suites_come_from_every_yaml_key_of_the_labelled_config_maps() -> None:
    config_maps = [
        {
            "metadata": {"name": "zeta"},
            "data": {"b.yaml": SUITE.format(name="z-b"), "notes.txt": "not a suite"},
        },
        {
            "metadata": {"name": "alpha"},
            "data": {"b.yaml": SUITE.format(name="a-b"), "a.yaml": SUITE.format(name="a-a")},
        },
        {"metadata": {"name": "empty"}},
    ]
    suites = suites_from_config_maps(config_maps)
    assert [(s.suite, s.source) for s in suites] == [
        ("a-a", "configmap/alpha/a.yaml"),
        ("a-b", "configmap/alpha/b.yaml"),
        ("z-b", "configmap/zeta/b.yaml"),
    ]
    broken = [
        {
            "metadata": {"name": "bad"},
            "data": {"x.yaml": "suite: x\nscenarios: [{name: a, turns: [], oops: 1}]\n"},
        }
    ]
    with pytest.raises(SuiteError, match=re.escape("configmap/bad/x.yaml:2: unknown key 'oops'")):
        suites_from_config_maps(broken)


async def test_a_local_pod_serves_the_eval_and_stops(tmp_path: Path) -> None:
    agent = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": "tiny"},
        "spec": {
            "pipeline": {
                "vad": {"provider": "energy"},
                "stt": {"provider": "synthetic"},
                "llm": {"provider": "scripted"},
                "tts": {"provider": "synthetic", "options": {"ms_per_char": "5"}},
            }
        },
    }
    config = agent_config_from_voiceagent(agent, "tiny.yaml")
    suite = yaml.safe_load(SUITE.format(name="tiny"))
    suite["scenarios"][0]["turns"][0]["expect"] = [{"contains": "how can I help"}]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    async with local_pod(config) as target:
        assert target.prompt_text == config.prompt_text and target.address.startswith("127.0.0.1:")
        report = await run_evals([load_suite(path)], target)
        address = target.address
    assert report.passed == 1, report.outcomes[0].first_failure
    # Stopped with the block: a new call cannot start.
    with pytest.raises(EvalUnusable, match="cannot reach"):
        await check_reachable(address, within=0.5)
