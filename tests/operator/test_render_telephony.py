"""spec.telephony's Secrets reach the pods as mounted credentials, never through the ConfigMap."""

from __future__ import annotations

from voicefleet_operator.render import credential_refs
from voicefleet_operator.spec import VoiceAgentSpec


def test_the_carriers_keys_and_the_webhooks_api_key_are_mounted() -> None:
    spec = VoiceAgentSpec.model_validate(
        {
            "telephony": {
                "enabled": True,
                "credentialSecretRef": {"name": "phone", "key": "api-key"},
                "twilioAuthTokenSecretRef": {"name": "twilio", "key": "token"},
                "plivoAuthTokenSecretRef": {"name": "plivo", "key": "token"},
            }
        }
    )
    refs = {(r.name, r.key) for r in credential_refs(spec)}
    assert {("phone", "api-key"), ("twilio", "token"), ("plivo", "token")} <= refs
