"""The tool layer's part of the spec: MCP servers and tool policies reach the pod's AgentConfig, and
MCP header Secrets are mounted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voicefleet_operator.render import Owner, agent_config, credential_refs
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="desk", namespace="ns1", uid="u-1")
SPEC = {
    "tools": [
        {
            "name": "book_table",
            "description": "Book a table.",
            "endpoint": {"url": "http://booking/book"},
            "confirm": True,
            "breaker": {"failureThreshold": 3, "cooldownSeconds": 20},
            "concurrency": {"limit": 4},
        }
    ],
    "mcpServers": [
        {
            "name": "crm",
            "url": "http://crm:8000/mcp",
            "headersSecretRef": {"name": "crm-auth", "key": "headers"},
            "allowTools": ["lookup_customer", "update_address"],
            "confirmTools": ["update_address"],
        }
    ],
}


def test_tool_layer_fields_reach_the_pod() -> None:
    spec = VoiceAgentSpec.model_validate(SPEC)
    config = agent_config(OWNER, spec, "prompt")
    [tool] = config.tools
    assert tool.confirm and tool.has_side_effects and tool.breaker.failure_threshold == 3
    assert tool.concurrency.limit == 4 and tool.concurrency.queue_timeout_seconds == 2.0
    [server] = config.mcp_servers
    assert server.allow_tools == ["lookup_customer", "update_address"]
    assert server.confirm_tools == ["update_address"]
    assert [(r.name, r.key) for r in credential_refs(spec)] == [("crm-auth", "headers")]
    # The pod reads its config back from the ConfigMap's JSON.
    assert type(config).model_validate_json(config.model_dump_json(by_alias=True)) == config


def test_a_bad_mcp_server_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        VoiceAgentSpec.model_validate({"mcpServers": [{"name": "crm", "url": "ftp://crm/mcp"}]})
    assert "mcpServers.0.url" in str(err.value)
