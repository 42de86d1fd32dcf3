"""The flow part of the CRD: bounded for CEL cost estimation, its rules present, the example valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from agent_pod.config import AgentConfig
from tests.operator.test_crd import CRD_FILE, _walk
from voicefleet_operator.flow_check import flow_condition
from voicefleet_operator.render import Owner, agent_config, credential_refs
from voicefleet_operator.spec import VoiceAgentSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flow-receptionist.yaml"


def _flow_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_every_flow_list_and_string_is_bounded() -> None:
    """The API server estimates the cost of CEL rules from these bounds; unbounded ones fail it."""
    for path, node in _walk(_flow_schema()["properties"]["flow"], "spec.flow"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"


def test_flow_rules_name_their_field() -> None:
    spec = _flow_schema()
    flow = spec["properties"]["flow"]
    rules = {r["message"]: r for r in flow["x-kubernetes-validations"]}
    assert rules["flow.initialNode must name a node of flow.nodes"]["fieldPath"] == ".initialNode"
    assert rules["flow transition to must name a node of flow.nodes"]["fieldPath"] == ".nodes"
    [tools_rule] = [r for r in spec["x-kubernetes-validations"] if "spec.tools" in r["message"]]
    assert tools_rule["fieldPath"] == ".flow"
    node = flow["properties"]["nodes"]["items"]
    assert {r["message"] for r in node["x-kubernetes-validations"]} == {
        "flow transition onTool must name one of the node's tools",
        "flow transition function must not reuse a tool name of the node",
    }


def test_example_flow_is_a_valid_spec_with_every_node_reachable() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec = VoiceAgentSpec.model_validate(doc["spec"])
    assert spec.flow is not None and [n.name for n in spec.flow.nodes] == ["reception", "booking", "billing"]
    assert flow_condition(spec.flow) == (True, "AllNodesReachable", "3 nodes reachable from reception")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: f.update(initialNode="lobby"), "flow.initialNode: 'lobby' is not a node"),
        (lambda f: f["nodes"][0]["transitions"][0].update(to="kitchen"), "'kitchen' is not a node"),
        (lambda f: f["nodes"][1]["tools"].append("wire_money"), "'wire_money' is not in spec.tools"),
    ],
)
def test_bad_flow_is_refused_by_the_model_naming_the_field(change: Any, words: str) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    change(doc["spec"]["flow"])
    with pytest.raises(ValidationError) as err:
        VoiceAgentSpec.model_validate(doc["spec"])
    assert words in str(err.value)


def test_node_llm_credentials_are_mounted() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["flow"]["nodes"][2]["llm"]["credentialsSecretRef"] = {"name": "openai-billing", "key": "k"}
    refs = credential_refs(VoiceAgentSpec.model_validate(doc["spec"]))
    assert ("openai-billing", "k") in {(r.name, r.key) for r in refs}


def test_the_flow_reaches_the_pods_config() -> None:
    spec = VoiceAgentSpec.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"])
    config = agent_config(Owner("chez-voice", "default", "uid-1"), spec, "prompt")
    assert config.flow == spec.flow
    # The pod reads its ConfigMap back through the same model (its checks run again there).
    assert AgentConfig.model_validate_json(config.model_dump_json(by_alias=True)).flow == spec.flow
