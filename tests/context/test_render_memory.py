"""The operator renders spec.memory and spec.context into the pods' AgentConfig, and mounts the memory
extractor's credentials."""

from __future__ import annotations

from pathlib import Path

import yaml

from voicefleet_operator.render import Owner, agent_config, credential_refs
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="desk", namespace="ns1", uid="u-1")


def test_memory_and_context_reach_the_pods_with_the_extractors_secret() -> None:
    spec = VoiceAgentSpec.model_validate(
        {
            "context": {"maxTokens": 4000, "targetTokens": 3000, "keepLastTurns": 4},
            "memory": {
                "blocks": [{"label": "booking", "description": "Booking", "kind": "slots", "slots": ["day"]}],
                "extraction": {
                    "enabled": True,
                    "llm": {
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "credentialsSecretRef": {"name": "extractor", "key": "api-key"},
                    },
                },
            },
        }
    )
    config = agent_config(OWNER, spec, "Be brief.")
    assert config.context.max_tokens == 4000 and config.context.keep_last_turns == 4
    assert config.memory.blocks[0].slots == ["day"] and config.memory.extraction.enabled
    assert ("extractor", "api-key") in [(r.name, r.key) for r in credential_refs(spec)]
    # a change of memory or budget is a new revision of the pods' config
    other = spec.model_copy(update={"context": spec.context.model_copy(update={"max_tokens": 5000})})
    assert agent_config(OWNER, other, "Be brief.").content_hash() != config.content_hash()


def test_the_example_agent_renders() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "memory-booking.yaml"
    spec = VoiceAgentSpec.model_validate(yaml.safe_load(example.read_text())["spec"])
    config = agent_config(OWNER, spec, "Take bookings.")
    assert [b.label for b in config.memory.blocks] == ["account", "booking", "facts"]
    assert config.memory.lookups[0].arguments == {"phone": "metadata.caller_id"}
    assert config.memory.persistence is not None and config.memory.persistence.caller_key_field == "caller_id"
