"""The API server itself checks spec.memory and spec.context (CEL rules and bounds of the CRD), naming
the field; a full memory and context spec is accepted with its defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Cluster

pytestmark = pytest.mark.e2e

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("target above max", {"context": {"maxTokens": 1000, "targetTokens": 2000}}, "spec.context"),
    ("tiny budget", {"context": {"maxTokens": 10}}, "spec.context.maxTokens"),
    (
        "slots on a text block",
        {"memory": {"blocks": [{"label": "a", "description": "d", "slots": ["x"]}]}},
        "spec.memory.blocks[0].slots",
    ),
    (
        "initial over the limit",
        {"memory": {"blocks": [{"label": "a", "description": "d", "limitChars": 16, "initial": "x" * 17}]}},
        "spec.memory.blocks[0].initial",
    ),
    (
        "bad label",
        {"memory": {"blocks": [{"label": "Caller Profile", "description": "d"}]}},
        "spec.memory.blocks[0].label",
    ),
    (
        "tool write to a read-only block",
        {
            "memory": {
                "blocks": [{"label": "a", "description": "d", "readOnly": True}],
                "toolWrites": [{"tool": "t", "block": "a"}],
            }
        },
        "spec.memory.toolWrites",
    ),
    (
        "persistence without a caller key",
        {"memory": {"persistence": {"ttlSeconds": 3600}}},
        "spec.memory.persistence.callerKeyField",
    ),
]


def create(cluster: Cluster, name: str, spec: dict[str, Any], check: bool = True) -> Any:
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": name},
        "spec": spec,
    }
    return cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body), check=check
    )


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_memory_or_context_is_rejected_naming_the_field(
    kwok_cluster: Cluster, case: str, spec: dict[str, Any], field: str
) -> None:
    out = create(kwok_cluster, "bad", spec, check=False)
    assert out.returncode != 0, f"{case}: the API server accepted it"
    assert field in out.stderr, f"{case}: message does not name {field}: {out.stderr}"


def test_memory_and_context_are_accepted_with_defaults(kwok_cluster: Cluster) -> None:
    memory = {
        "blocks": [
            {"label": "caller_profile", "description": "Who calls", "readOnly": True, "initial": "VIP"},
            {"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day", "party"]},
        ],
        "toolWrites": [{"tool": "book", "block": "booking", "slot": "day", "field": "day"}],
        "extraction": {"enabled": True},
        "persistence": {"callerKeyField": "caller_id"},
    }
    spec = json.loads(create(kwok_cluster, "memory", {"memory": memory}).stdout)["spec"]
    assert spec["context"] == {
        "maxTokens": 8000,
        "targetTokens": 6000,
        "keepLastTurns": 6,
        "summarize": True,
        "summaryMaxWords": 150,
    }
    assert spec["memory"]["blocks"][1]["limitChars"] == 2000
    assert spec["memory"]["persistence"]["ttlSeconds"] == 30 * 86400
    explain = kwok_cluster.kubectl("explain", "voiceagent.spec.memory.blocks.limitChars").stdout
    assert "refused" in explain


def test_the_example_agent_is_accepted(kwok_cluster: Cluster) -> None:
    example = (Path(__file__).resolve().parents[2] / "examples" / "memory-booking.yaml").read_text()
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=example)
    assert json.loads(out.stdout)["spec"]["memory"]["lookups"][0]["trigger"] == "session_start"
