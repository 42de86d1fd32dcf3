"""Generates the VoiceAgent and KnowledgeBase CRDs from the pydantic models.

    python -m voicefleet_operator.crdgen --write   # crds/ and helm/voicefleet/crds/
    python -m voicefleet_operator.crdgen           # to stdout

A test keeps the committed file equal to this output. Pydantic's JSON Schema is
turned into a Kubernetes *structural* schema: references inlined, Optional
unwrapped, int-or-string marked, and keywords the API server refuses dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from agent_pod.knowledge.spec import KnowledgeBaseSpec

from .spec import GROUP, KIND, PLURAL, VERSION, VoiceAgentSpec, VoiceAgentStatus
from .spec_knowledge import KB_KIND, KB_PLURAL, KnowledgeBaseStatus

_DROP = {"title", "additionalProperties", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = {**target, **node}  # the field's own description wins over the class docstring
        return _structural(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        types = {v.get("type") for v in variants}
        if types == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif len(variants) == 1:
            node = {**variants[0], **node}
        else:
            raise ValueError(f"no structural form for anyOf {variants}")
        if node.get("default", 0) is None:
            del node["default"]
        return _structural(node, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            if key == "additionalProperties" and isinstance(value, dict):
                out[key] = _structural(value, defs)  # maps keep their value schema
            continue
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "default" and value is None:
            continue
        else:
            out[key] = _structural(value, defs)
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    return out


class _WithFactoryDefaults(GenerateJsonSchema):
    """Writes defaults made by default_factory too, in full: the API server checks every default
    against the CEL rules, so an object field the user leaves out needs its complete default."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                return value.model_dump(by_alias=True, mode="json", exclude_none=True)
            return value
        return super().get_default_value(schema)


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    return _structural(raw, raw.get("$defs", {}))


def crd() -> dict[str, Any]:
    return _crd(
        KIND,
        PLURAL,
        "va",
        "A fleet of real-time voice AI agents.",
        {**openapi_schema(VoiceAgentSpec), "default": {}},  # every field has a default
        openapi_schema(VoiceAgentStatus),
        {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        [
            _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
            _column("Replicas", "integer", ".status.readyReplicas", "Ready pods"),
            _column("Sessions", "integer", ".status.activeSessions", "Live sessions"),
            _column("Capacity", "integer", ".status.capacity", "Session slots on ready pods"),
            _column("Prompt", "string", ".status.promptVersion"),
            _column("Phase", "string", ".status.rollout.phase", "Rollout phase of a new revision"),
            _column("Weight", "integer", ".status.rollout.weight", "Percent of new sessions on the canary"),
            _column("Age", "date", ".metadata.creationTimestamp"),
        ],
    )


def knowledge_base_crd() -> dict[str, Any]:
    return _crd(
        KB_KIND,
        KB_PLURAL,
        "kb",
        "A knowledge base: documents ingested from its sources, indexed and served to voice agents.",
        openapi_schema(KnowledgeBaseSpec),  # no default: a base needs its sources
        openapi_schema(KnowledgeBaseStatus),
        {"status": {}},
        [
            _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
            _column("Documents", "integer", ".status.documents", "Documents indexed"),
            _column("Chunks", "integer", ".status.chunks", "Chunks indexed"),
            _column("Last Sync", "date", ".status.lastSyncTime", "Newest sync attempt"),
            _column("Stale", "string", '.status.conditions[?(@.type=="Stale")].status', "A source is stale"),
            _column("Age", "date", ".metadata.creationTimestamp"),
        ],
    )


def _crd(
    kind: str,
    plural: str,
    short_name: str,
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    subresources: dict[str, Any],
    columns: list[dict[str, str]],
) -> dict[str, Any]:
    status["x-kubernetes-preserve-unknown-fields"] = True  # kopf keeps its own bookkeeping here
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "voicefleet"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["voicefleet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                            **({} if "default" in spec else {"required": ["spec"]}),
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, type_: str, path: str, description: str = "") -> dict[str, str]:
    column = {"name": name, "type": type_, "jsonPath": path}
    if description:
        column["description"] = description
    return column


REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"
HEADER = "# Generated by `python -m voicefleet_operator.crdgen`; do not edit.\n"


def render_one(definition: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(definition, sort_keys=False, width=120)


def render() -> str:
    """Every CRD, as one YAML stream (`voicefleet-operator crd`)."""
    return "---\n".join(render_one(d) for d in (crd(), knowledge_base_crd()))


def files() -> dict[Path, str]:
    """The committed CRD files and what each must contain."""
    return {
        REPO_CRDS.parent / folder / f"{d['metadata']['name']}.yaml": render_one(d)
        for d in (crd(), knowledge_base_crd())
        for folder in ("crds", "helm/voicefleet/crds")
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        for path, text in files().items():
            path.write_text(text)
    else:
        sys.stdout.write(render())
