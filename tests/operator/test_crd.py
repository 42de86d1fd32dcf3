"""The committed CRD is the generator's output, and the models and schema agree."""

from __future__ import annotations

import yaml

from voicefleet_operator import crdgen
from voicefleet_operator.spec import VoiceAgentSpec

CRD_FILE = crdgen.CRD_FILES[0]


def test_committed_crds_are_generated_output() -> None:
    for path in crdgen.CRD_FILES:
        assert path.read_text() == crdgen.render(), (
            f"{path} is stale: run python -m voicefleet_operator.crdgen --write"
        )


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
