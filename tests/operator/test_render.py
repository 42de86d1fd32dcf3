from __future__ import annotations

import json
import re

from agent_pod.settings import PodSettings
from voicefleet_operator.render import Owner, credential_refs, label_value, render
from voicefleet_operator.spec import VoiceAgentSpec

OWNER = Owner(name="desk", namespace="ns1", uid="u-1")
REDIS = "redis://redis:6379/0"


def spec(**kw: object) -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate(kw)


def test_render_is_deterministic() -> None:
    a = render(OWNER, spec(replicas=3), "prompt", 3, REDIS)
    b = render(OWNER, spec(replicas=3), "prompt", 3, REDIS)
    assert a == b


def test_every_child_is_owned_and_labelled() -> None:
    children = render(OWNER, spec(), "p", 1, REDIS)
    for obj in children.all():
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "VoiceAgent",
            "desk",
            "u-1",
            True,
        )
        assert obj["metadata"]["labels"]["voicefleet.io/agent"] == "desk"
        assert obj["metadata"]["namespace"] == "ns1"


def test_config_or_prompt_change_changes_the_pod_template() -> None:
    base = render(OWNER, spec(), "p1", 2, REDIS)
    prompt = render(OWNER, spec(), "p2", 2, REDIS)
    voice = render(OWNER, spec(pipeline={"tts": {"voice": "en-gb"}}), "p1", 2, REDIS)
    replicas = render(OWNER, spec(), "p1", 5, REDIS)
    hashes = {
        c.deployment["spec"]["template"]["metadata"]["annotations"]["voicefleet.io/config-hash"]
        for c in (base, prompt, voice)
    }
    assert len(hashes) == 3
    # Replicas are not configuration: scaling must never roll the pods.
    assert replicas.deployment["spec"]["template"] == base.deployment["spec"]["template"]


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # Kubernetes' rule


def test_pods_carry_their_revision_and_prompt_version_as_labels_outside_the_selector() -> None:
    children = render(OWNER, spec(prompt={"inline": "x", "version": "2024.06-b"}), "p", 2, REDIS)
    deployment = children.deployment["spec"]
    pod_labels = deployment["template"]["metadata"]["labels"]
    assert pod_labels["voicefleet.io/revision"] == children.config_hash
    assert pod_labels["voicefleet.io/prompt-version"] == "2024.06-b"
    # The selector is immutable: a new revision must not need a new one.
    selector = deployment["selector"]["matchLabels"]
    assert not {"voicefleet.io/revision", "voicefleet.io/prompt-version"} & set(selector)
    assert selector.items() <= pod_labels.items()
    assert children.service["spec"]["selector"] == selector
    unversioned = render(OWNER, spec(), "p", 2, REDIS).deployment["spec"]["template"]["metadata"]["labels"]
    assert unversioned["voicefleet.io/prompt-version"] == "none"
    for value in [*pod_labels.values(), *unversioned.values()]:
        assert LABEL_VALUE.match(value) and len(value) <= 63, value


def test_prompt_versions_become_valid_label_values() -> None:
    assert label_value("v1.2") == "v1.2"
    assert label_value("v1-") == "v1"  # the CRD allows a trailing dash, a label value does not
    assert label_value("release_7__") == "release_7"
    assert label_value("") == "none"
    assert label_value("a" * 80) == "a" * 63
    assert label_value("v1+build/7") == "v1-build-7"


def test_pod_config_carries_prompt_and_pipeline() -> None:
    children = render(OWNER, spec(prompt={"inline": "x", "version": "v7"}), "Be brief.", 1, REDIS)
    config = json.loads(children.config_map["data"]["agent.json"])
    assert config["promptText"] == "Be brief."
    assert config["promptVersion"] == "v7"
    assert config["agent"] == "desk"
    assert config["pipeline"]["stt"]["provider"] == "pocketsphinx"


def test_grace_period_and_probes_follow_the_drain_design() -> None:
    children = render(OWNER, spec(session={"drainTimeoutSeconds": 900}), "p", 1, REDIS)
    pod = children.deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 930
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] != c["livenessProbe"]["httpGet"]["path"]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["voicefleet", "drain", "--port", "8080"]
    assert children.deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_agent_pods_mount_no_service_account_token() -> None:
    pod = render(OWNER, spec(), "p", 1, REDIS).deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod  # the namespace's default account, which has no grants


def test_credentials_are_mounted_secrets_never_values() -> None:
    s = spec(
        pipeline={
            "llm": {
                "provider": "openai",
                "credentialsSecretRef": {"name": "openai", "key": "api-key"},
                "fallback": [{"provider": "scripted"}],
            },
            "tts": {"provider": "openai", "credentialsSecretRef": {"name": "openai", "key": "api-key"}},
            "stt": {"provider": "deepgram", "credentialsSecretRef": {"name": "dg", "key": "token"}},
        }
    )
    assert [(r.name, r.key) for r in credential_refs(s)] == [("dg", "token"), ("openai", "api-key")]
    children = render(OWNER, s, "p", 1, REDIS)
    pod = children.deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/etc/voicefleet/credentials/dg", "/etc/voicefleet/credentials/openai"} <= mounts
    assert "api-key" not in children.config_map["data"]["agent.json"].replace('"key": "api-key"', "")


def test_redis_url_from_secret_or_spec_or_default() -> None:
    def redis_env(s: VoiceAgentSpec) -> dict:
        env = render(OWNER, s, "p", 1, REDIS).deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return next(e for e in env if e["name"] == "VOICEFLEET_REDIS_URL")

    assert redis_env(spec())["value"] == REDIS
    assert redis_env(spec(redis={"url": "redis://other:6379/2"}))["value"] == "redis://other:6379/2"
    ref = redis_env(spec(redis={"secretRef": {"name": "r", "key": "url"}}))["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "r", "key": "url"}


def test_sentinel_over_tls_renders_what_the_pod_reads(monkeypatch) -> None:
    s = spec(
        redis={
            "sentinel": {
                "masterName": "voice",
                "addresses": ["s-0.sentinel:26379", "s-1.sentinel:26379"],
                "passwordSecretRef": {"name": "redis-auth", "key": "sentinel"},
            },
            "passwordSecretRef": {"name": "redis-auth", "key": "redis"},
            "tls": {
                "caSecretRef": {"name": "redis-ca", "key": "ca.pem"},
                "clientCertSecretName": "redis-client",
            },
        }
    )
    pod = render(OWNER, s, "p", 1, REDIS).deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert "VOICEFLEET_REDIS_URL" not in env
    assert env["VOICEFLEET_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-auth",
        "key": "sentinel",
    }
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if v["name"].startswith("redis-tls")}
    assert volumes["redis-tls-ca"] == {
        "secretName": "redis-ca",
        "items": [{"key": "ca.pem", "path": "ca.crt"}],
    }
    assert volumes["redis-tls-client"]["secretName"] == "redis-client"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # the pod's settings read the rendered environment (Secrets resolved by the kubelet)
    for name, e in env.items():
        if name.startswith("VOICEFLEET_REDIS"):
            monkeypatch.setenv(name, e.get("value", f"secret-of-{name}"))
    connection = PodSettings().redis_connection
    assert connection is not None
    assert connection.sentinels == ("s-0.sentinel:26379", "s-1.sentinel:26379")
    assert connection.sentinel_master == "voice" and connection.uses_tls
    assert connection.sentinel_password == "secret-of-VOICEFLEET_REDIS_SENTINEL_PASSWORD"
    assert connection.tls_ca_file == f"{mounts['redis-tls-ca']}/ca.crt"
    assert connection.tls_cert_file == f"{mounts['redis-tls-client']}/tls.crt"


def test_cluster_renders_its_seed_node() -> None:
    s = spec(redis={"url": "rediss://redis-cluster:6379", "cluster": True})
    env = render(OWNER, s, "p", 1, REDIS).deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {e["name"]: e.get("value") for e in env}
    assert values["VOICEFLEET_REDIS_URL"] == "rediss://redis-cluster:6379"
    assert values["VOICEFLEET_REDIS_CLUSTER"] == "true"
