"""The committed CRD is the generator's output, and the models and schema agree."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from voicefleet_operator import crdgen
from voicefleet_operator.spec import VoiceAgentSpec, VoiceAgentStatus

CRD_FILE = crdgen.REPO_CRDS / "voiceagents.voicefleet.io.yaml"


def test_committed_crds_are_generated_output() -> None:
    generated = crdgen.files()
    assert len(generated) == 4  # VoiceAgent and KnowledgeBase, in crds/ and the chart
    for path, text in generated.items():
        assert path.read_text() == text, f"{path} is stale: run python -m voicefleet_operator.crdgen --write"


def _walk(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if "items" in schema:
        out += _walk(schema["items"], f"{path}[]")
    return out


def test_schema_is_structural_and_documented() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path, node in _walk(spec, "spec"):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if path.count(".") <= 3 and not path.endswith("[]"):
            assert node.get("description"), f"{path} is undocumented (kubectl explain)"


def test_schema_defaults_parse_as_a_spec() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    spec = VoiceAgentSpec.model_validate(defaults)
    assert spec == VoiceAgentSpec()


def test_kubectl_get_shows_rollout_phase_and_weight() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.rollout.phase"
    assert (columns["Weight"]["jsonPath"], columns["Weight"]["type"]) == (".status.rollout.weight", "integer")


def test_rollout_defaults_keep_todays_rolling_update() -> None:
    rollout = VoiceAgentSpec().rollout
    assert rollout.strategy == "rolling"
    assert rollout.eval is None
    assert [s.weight for s in rollout.steps] == [10, 50]


def test_status_without_rollout_parses_to_a_stable_rollout() -> None:
    status = VoiceAgentStatus.model_validate({"replicas": 2, "kopf": {"progress": {}}})
    assert status.rollout.phase == "Stable"
    assert status.rollout.weight == 0


BAD_ROLLOUTS: list[tuple[dict[str, Any], str]] = [
    ({"strategy": "canary", "steps": [{"weight": 50}, {"weight": 50}]}, "steps[1].weight 50 after 50"),
    ({"strategy": "canary", "steps": [{"weight": 50}, {"weight": 10}]}, "steps[1].weight 10 after 50"),
    ({"strategy": "canary", "steps": []}, "rollout.steps"),
    ({"strategy": "canary", "steps": [{"weight": 0}]}, "rollout.steps.0.weight"),
    ({"strategy": "canary", "steps": [{"weight": 10, "pauseSeconds": -1}]}, "rollout.steps.0.pauseSeconds"),
    ({"strategy": "rolling", "eval": {"suites": ["smoke"]}}, "rollout.eval needs strategy canary"),
    ({"strategy": "canary", "eval": {"suites": []}}, "rollout.eval needs suites or packs"),
    ({"strategy": "canary", "eval": {"packs": ["jailbreaks"]}}, "rollout.eval.packs.0"),
    ({"strategy": "canary", "eval": {"suites": ["Smoke_Suite"]}}, "rollout.eval.suites.0"),
    ({"analysis": {"maxTurnErrorRate": 1.5}}, "rollout.analysis.maxTurnErrorRate"),
    ({"analysis": {"maxP95IncreaseOverStable": 0.5}}, "rollout.analysis.maxP95IncreaseOverStable"),
]


@pytest.mark.parametrize(("rollout", "words"), BAD_ROLLOUTS, ids=[w for _, w in BAD_ROLLOUTS])
def test_bad_rollout_is_refused_by_the_model_naming_the_field(rollout: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        VoiceAgentSpec.model_validate({"rollout": rollout})
    text = str(refused.value)
    locations = {".".join(str(p) for p in e["loc"]) for e in refused.value.errors(include_url=False)}
    assert words in text or any(words in loc for loc in locations), text
