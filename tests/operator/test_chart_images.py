"""The chart's images: the operator runs its own and tells the operator the knowledge servers' image, by
default the Dockerfile's knowledge target tagged as the chart's appVersion (as the operator's default)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.chart import CHART, render
from voicefleet_operator.spec_knowledge import DEFAULT_KNOWLEDGE_IMAGE


def operator_container(*values: str) -> dict[str, Any]:
    docs = render(*values)
    (deployment,) = [
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "vf-voicefleet-operator")
    ]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_operator_is_told_the_knowledge_image_tagged_as_the_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    container = operator_container()
    assert container["image"] == f"ghcr.io/voicefleet/voicefleet-operator:{app_version}"
    knowledge_image = env(container)["VOICEFLEET_KNOWLEDGE_IMAGE"]
    assert knowledge_image == f"ghcr.io/voicefleet/voicefleet-knowledge:{app_version}"
    assert knowledge_image == DEFAULT_KNOWLEDGE_IMAGE
    assert "VOICEFLEET_AGENT_IMAGE" not in env(container)


def test_the_knowledge_image_is_a_setting_of_its_own() -> None:
    container = operator_container(
        "knowledge.image.repository=registry.local/kb", "knowledge.image.tag=t1", "image.tag=agents"
    )
    assert env(container)["VOICEFLEET_KNOWLEDGE_IMAGE"] == "registry.local/kb:t1"
