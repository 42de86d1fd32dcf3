"""The tool layer's spec against a real API server: the docs/tools.md example is accepted with its
defaults, and bad tool-layer fields are refused naming the field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.support.kube import Cluster
from voicefleet_operator.devcluster import REPO

pytestmark = pytest.mark.e2e

MCP = {"name": "crm", "url": "http://crm:8000/mcp"}
TOOL = {"name": "book", "description": "Book a slot.", "endpoint": {"url": "http://booking:8080/book"}}
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("MCP URL not http", {"mcpServers": [{**MCP, "url": "file:///mcp"}]}, "spec.mcpServers[0].url"),
    ("MCP name not DNS-like", {"mcpServers": [{**MCP, "name": "CRM_1"}]}, "spec.mcpServers[0].name"),
    ("duplicate MCP servers", {"mcpServers": [MCP, MCP]}, "spec.mcpServers[1]"),
    (
        "breaker threshold zero",
        {"tools": [{**TOOL, "breaker": {"failureThreshold": 0}}]},
        "spec.tools[0].breaker",
    ),
    (
        "concurrency zero",
        {"tools": [{**TOOL, "concurrency": {"limit": 0}}]},
        "spec.tools[0].concurrency.limit",
    ),
    (
        "idempotency TTL too short",
        {"tools": [{**TOOL, "idempotencyTtlSeconds": 1}]},
        "spec.tools[0].idempotencyTtlSeconds",
    ),
]


def docs_example() -> dict[str, Any]:
    text = (REPO / "docs" / "tools.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    body: dict[str, Any] = yaml.safe_load(block.group(1))
    return body


def test_the_docs_example_is_accepted_with_defaults(kwok_cluster: Cluster) -> None:
    out = kwok_cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(docs_example())
    )
    spec = json.loads(out.stdout)["spec"]
    [tool] = spec["tools"]
    assert tool["confirm"] is True and tool["breaker"] == {"failureThreshold": 5, "cooldownSeconds": 30}
    assert "sideEffects" not in tool  # derived from the method in the pod
    [server] = spec["mcpServers"]
    assert server["confirmTools"] == ["update_address"] and server["sideEffects"] is True
    assert server["concurrency"] == {"limit": 16, "queueTimeoutSeconds": 2}


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_tool_layer_spec_is_rejected_naming_the_field(
    kwok_cluster: Cluster, case: str, spec: dict[str, Any], field: str
) -> None:
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(body), check=False)
    assert out.returncode != 0, f"{case}: the API server accepted it"
    assert field in out.stderr, f"{case}: message does not name {field}: {out.stderr}"


def test_explain_documents_the_tool_layer(kwok_cluster: Cluster) -> None:
    out = kwok_cluster.kubectl("explain", "voiceagent.spec.tools.confirm").stdout
    assert "asked to confirm" in out
    out = kwok_cluster.kubectl("explain", "voiceagent.spec.mcpServers.allowTools").stdout
    assert "offered to the LLM" in out
