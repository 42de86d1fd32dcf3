"""The VoiceAgent snippet the README shows for the conversation engine is a valid spec."""

from __future__ import annotations

from pathlib import Path

import yaml

from voicefleet_operator.spec import VoiceAgentSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_conversation_engine_snippet_is_a_valid_spec() -> None:
    section = README.read_text().split("## Conversation engine", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = VoiceAgentSpec.model_validate(yaml.safe_load(snippet)["spec"])
    assert spec.flow is not None and spec.flow.initial_node == "desk"
    assert spec.tools[0].confirm and spec.transfer is not None
