"""The operator exposes the AudioSocket port (container and Service) only when it is enabled."""

from __future__ import annotations

from voicefleet_operator.render import Owner, credential_refs, render
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="pbx-desk", namespace="ns1", uid="u-1")
REDIS = "redis://redis:6379/0"


def _ports(spec: VoiceAgentSpec) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    children = render(OWNER, spec, "p", 1, REDIS)
    container = children.deployment["spec"]["template"]["spec"]["containers"][0]
    return (
        {p["name"]: p["containerPort"] for p in container["ports"]},
        {p["name"]: p["port"] for p in children.service["spec"]["ports"]},
        {p["name"]: p["port"] for p in children.headless_service["spec"]["ports"]},
    )


def test_audiosocket_port_is_rendered_only_when_enabled() -> None:
    container, service, headless = _ports(VoiceAgentSpec.model_validate({}))
    assert "audiosocket" not in container and "audiosocket" not in service and "audiosocket" not in headless
    spec = VoiceAgentSpec.model_validate({"transport": {"audioSocket": {"enabled": True, "port": 9100}}})
    container, service, headless = _ports(spec)
    assert container["audiosocket"] == 9100
    assert service["audiosocket"] == 9100
    assert headless["audiosocket"] == 9100  # a PBX may dial the pod that holds its call directly


def test_the_audiosocket_credential_is_a_mounted_secret() -> None:
    spec = VoiceAgentSpec.model_validate(
        {
            "transport": {
                "audioSocket": {"enabled": True, "credentialSecretRef": {"name": "pbx", "key": "api-key"}}
            }
        }
    )
    assert ("pbx", "api-key") in [(r.name, r.key) for r in credential_refs(spec)]
