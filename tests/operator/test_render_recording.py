"""What the operator gives agent pods for spec.recording: the volume, its path, the bucket's keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agent_pod.records.paths import RECORDINGS_DIR, RECORDS_DIR
from voicefleet_operator.render import Owner, render
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="desk", namespace="ns1", uid="u-1")
REDIS = "redis://redis:6379/0"
S3 = {
    "endpoint": "https://s3.example.internal:9000",
    "bucket": "calls",
    "accessKeySecretRef": {"name": "rec-s3", "key": "access"},
    "secretKeySecretRef": {"name": "rec-s3", "key": "secret"},
}


def pod(recording: dict[str, Any]) -> dict[str, Any]:
    spec = VoiceAgentSpec.model_validate({"recording": recording})
    return render(OWNER, spec, "p", 1, REDIS).deployment["spec"]["template"]["spec"]


def recordings_volume(pod_spec: dict[str, Any]) -> dict[str, Any] | None:
    return next((v for v in pod_spec["volumes"] if v["name"] == "records"), None)


def test_no_recording_no_volume() -> None:
    spec = pod({})
    assert recordings_volume(spec) is None
    assert "fsGroup" not in spec["securityContext"]


def test_volume_storage_mounts_the_claim_writable_by_the_agent() -> None:
    spec = pod({"enabled": True, "volumeClaim": "call-recordings"})
    assert recordings_volume(spec) == {
        "name": "records",
        "persistentVolumeClaim": {"claimName": "call-recordings"},
    }
    container = spec["containers"][0]
    assert {"name": "records", "mountPath": RECORDS_DIR} in container["volumeMounts"]
    assert {"name": "VOICEFLEET_RECORDINGS_DIR", "value": RECORDINGS_DIR} in container["env"]
    assert spec["securityContext"]["fsGroup"] == 10001


def test_s3_storage_spools_on_an_emptydir_and_mounts_the_bucket_keys() -> None:
    spec = pod({"enabled": True, "storage": "s3", "s3": S3, "volumeSizeLimit": "2Gi"})
    assert recordings_volume(spec) == {"name": "records", "emptyDir": {"sizeLimit": "2Gi"}}
    secrets = [v["secret"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "rec-s3"]
    assert secrets == [
        {
            "secretName": "rec-s3",
            "items": [{"key": "access", "path": "access"}, {"key": "secret", "path": "secret"}],
        }
    ]
    # The pod's config names the keys, never their values.
    config = json.loads(
        render(
            OWNER,
            VoiceAgentSpec.model_validate({"recording": {"enabled": True, "storage": "s3", "s3": S3}}),
            "p",
            1,
            REDIS,
        ).config_map["data"]["agent.json"]
    )
    assert config["recording"]["s3"]["accessKeySecretRef"] == {"name": "rec-s3", "key": "access"}


def test_s3_storage_needs_a_bucket() -> None:
    with pytest.raises(ValidationError, match=r"recording\.s3"):
        VoiceAgentSpec.model_validate({"recording": {"enabled": True, "storage": "s3"}})


def test_recordings_and_audit_logs_share_the_records_volume() -> None:
    spec = VoiceAgentSpec.model_validate(
        {"recording": {"enabled": True, "volumeClaim": "call-records"}, "audit": {"enabled": True}}
    )
    pod_spec = render(OWNER, spec, "p", 1, REDIS).deployment["spec"]["template"]["spec"]
    assert [v for v in pod_spec["volumes"] if v["name"] == "records"] == [
        {"name": "records", "persistentVolumeClaim": {"claimName": "call-records"}}
    ]
    env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
    assert env["VOICEFLEET_RECORDINGS_DIR"].startswith(RECORDS_DIR + "/")
    assert env["VOICEFLEET_AUDIT_DIR"].startswith(RECORDS_DIR + "/")
    assert env["VOICEFLEET_RECORDINGS_DIR"] != env["VOICEFLEET_AUDIT_DIR"]
