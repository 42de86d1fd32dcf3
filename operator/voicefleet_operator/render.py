"""What a VoiceAgent becomes: the desired child objects, as plain manifests.

Pure functions only: the reconciler applies their output with server-side
apply, so rendering the same spec twice changes nothing in the cluster.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from agent_pod.config import AgentConfig, KnowledgeSpec, SecretKeyRef
from agent_pod.providers.credentials import DEFAULT_DIR as CREDENTIALS_DIR
from agent_pod.records.paths import AUDIT_DIR, RECORDINGS_DIR, RECORDS_DIR

from .render_redis import redis_pod_parts
from .spec import GROUP, KIND, VERSION, VoiceAgentSpec

MANAGED_BY = "voicefleet-operator"
AGENT_LABEL = "voicefleet.io/agent"
COMPONENT = "agent-pod"
HASH_ANNOTATION = "voicefleet.io/config-hash"
# On the pod template only (a Deployment's selector is immutable): the PodMonitor copies them onto
# every series the pod exports, so dashboards and the canary analysis compare revisions.
REVISION_LABEL = "voicefleet.io/revision"
PROMPT_VERSION_LABEL = "voicefleet.io/prompt-version"
CONFIG_DIR = "/etc/voicefleet/config"
RESUME_KEY_DIR = "/etc/voicefleet/resume-key"
AUDIT_KEY_DIR = "/etc/voicefleet/audit-key"
# Call records (audit logs under audit/): an emptyDir unless the records' storage is configured.
# After the drain deadline: closing sessions and deregistering (a few seconds), then one last scrape
# of the pod's metrics (up to the chart's default 15 s interval; agent_pod.runtime).
GRACE_MARGIN_SECONDS = 30


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Children:
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    headless_service: dict[str, Any]
    pdb: dict[str, Any]
    config_hash: str

    def all(self) -> list[dict[str, Any]]:
        return [self.config_map, self.service, self.headless_service, self.pdb, self.deployment]


def selector_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "voicefleet-agent",
        "app.kubernetes.io/instance": name,
        AGENT_LABEL: name,
    }


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "voicefleet",
    }


def label_value(text: str) -> str:
    """``text`` as a valid label value (alphanumeric at both ends, at most 63 characters); "none" when
    nothing is left. A prompt version may end in "-", "_" or "." where a label value may not."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:63]) or "none"


def pod_labels(name: str, spec: VoiceAgentSpec, config_hash: str) -> dict[str, str]:
    return {
        **labels(name),
        REVISION_LABEL: config_hash,
        PROMPT_VERSION_LABEL: label_value(spec.prompt.version),
    }


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def resume_key_secret_name(name: str) -> str:
    return f"{name}-resume-key"


def audit_key_secret_name(name: str) -> str:
    return f"{name}-audit-key"


def agent_config(
    owner: Owner, spec: VoiceAgentSpec, prompt_text: str, knowledge: KnowledgeSpec | None = None
) -> AgentConfig:
    """The pod-facing part of the spec: what every agent pod of this VoiceAgent runs. ``knowledge``:
    spec.knowledge resolved against the namespace's KnowledgeBases (knowledge_select.resolve)."""
    return AgentConfig(
        agent=owner.name,
        namespace=owner.namespace,
        pipeline=spec.pipeline,
        prompt_text=prompt_text,
        prompt_version=spec.prompt.version,
        tools=spec.tools,
        transport=spec.transport,
        session=spec.session,
        sessions_per_pod=spec.autoscaling.sessions_per_pod,
        auth=spec.auth,
        memory=spec.memory,
        context=spec.context,
        flow=spec.flow,
        mcp_servers=spec.mcp_servers,
        transfer=spec.transfer,
        audit=spec.audit,
        telephony=spec.telephony,
        recording=spec.recording,
        knowledge=knowledge,
    )


def credential_refs(spec: VoiceAgentSpec) -> list[SecretKeyRef]:
    """Every Secret key the pods need, deduplicated, in a stable order."""
    refs: dict[tuple[str, str], SecretKeyRef] = {}
    p = spec.pipeline
    for stage in (p.vad, p.stt, p.llm, p.tts):
        for choice in [stage, *stage.fallback]:
            if choice.credentials_secret_ref:
                ref = choice.credentials_secret_ref
                refs[(ref.name, ref.key)] = ref
    for node in spec.flow.nodes if spec.flow else []:  # the flow's own LLMs
        for choice in [node.llm, *node.llm.fallback] if node.llm else []:
            if choice.credentials_secret_ref:
                ref = choice.credentials_secret_ref
                refs[(ref.name, ref.key)] = ref
    # The speech gate's supervisor model has a key of its own.
    if p.supervisor is not None and p.supervisor.llm is not None and p.supervisor.llm.credentials_secret_ref:
        ref = p.supervisor.llm.credentials_secret_ref
        refs[(ref.name, ref.key)] = ref
    for tool in spec.tools:
        if tool.endpoint.headers_secret_ref:
            ref = tool.endpoint.headers_secret_ref
            refs[(ref.name, ref.key)] = ref
    t = spec.telephony  # the carriers' signing keys, and the API key the webhook creates sessions with
    for ref in (
        t.credential_secret_ref,
        t.twilio_auth_token_secret_ref,
        t.telnyx_public_key_secret_ref,
        t.vonage_signature_secret_ref,
        t.plivo_auth_token_secret_ref,
    ):
        if ref is not None:
            refs[(ref.name, ref.key)] = ref
    for server in spec.mcp_servers:
        if server.headers_secret_ref:
            refs[(server.headers_secret_ref.name, server.headers_secret_ref.key)] = server.headers_secret_ref
    extractor = spec.memory.extraction.llm  # the memory extraction's own LLM, when it has one
    if extractor and extractor.credentials_secret_ref:
        refs[(extractor.credentials_secret_ref.name, extractor.credentials_secret_ref.key)] = (
            extractor.credentials_secret_ref
        )
    if spec.transport.audio_socket.credential_secret_ref:  # the key AudioSocket calls are admitted with
        ref = spec.transport.audio_socket.credential_secret_ref
        refs[(ref.name, ref.key)] = ref
    rec = spec.recording
    if rec.enabled and rec.storage == "s3" and rec.s3 is not None:  # the recording bucket's keys
        for ref in (rec.s3.access_key_secret_ref, rec.s3.secret_key_secret_ref):
            refs[(ref.name, ref.key)] = ref
    # The API keyring and JWT keys are read by the pods from the same mounted credentials dir.
    for auth_ref in (spec.auth.api_keys_secret_ref, spec.auth.jwt.keys_secret_ref if spec.auth.jwt else None):
        if auth_ref:
            refs[(auth_ref.name, auth_ref.key)] = auth_ref
    return [refs[k] for k in sorted(refs)]


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(owner: Owner, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def render(
    owner: Owner,
    spec: VoiceAgentSpec,
    prompt_text: str,
    replicas: int,
    default_redis_url: str,
    knowledge: KnowledgeSpec | None = None,
) -> Children:
    """All children of a VoiceAgent. ``replicas`` is decided by the caller (spec or autoscaler)."""
    config = agent_config(owner, spec, prompt_text, knowledge)
    config_json = json.dumps(config.dump(), sort_keys=True, indent=1)
    # The hash covers everything the pods see, so any change rolls the Deployment.
    config_hash = hashlib.sha256(
        json.dumps([config_json, spec.image, default_redis_url, spec.redis.dump()], sort_keys=True).encode()
    ).hexdigest()[:16]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, f"{owner.name}-config"),
        "data": {"agent.json": config_json},
    }
    sel = selector_labels(owner.name)
    t = spec.transport
    service_ports = [{"name": "http", "port": t.http_port, "targetPort": "http", "protocol": "TCP"}]
    if t.grpc.enabled:
        service_ports.append({"name": "grpc", "port": t.grpc.port, "targetPort": "grpc", "protocol": "TCP"})
    if t.audio_socket.enabled:
        service_ports.append(
            {
                "name": "audiosocket",
                "port": t.audio_socket.port,
                "targetPort": "audiosocket",
                "protocol": "TCP",
            }
        )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.name),
        "spec": {"type": "ClusterIP", "selector": sel, "ports": service_ports},
    }
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, f"{owner.name}-pods"),
        "spec": {
            "clusterIP": "None",
            "selector": sel,
            "publishNotReadyAddresses": False,
            "ports": [*service_ports, {"name": "metrics", "port": t.metrics_port, "targetPort": "metrics"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, owner.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": sel}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, owner.name, {HASH_ANNOTATION: config_hash}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": _pod_template(owner, spec, config_hash, default_redis_url),
        },
    }
    return Children(config_map, deployment, service, headless, pdb, config_hash)


def _pod_template(
    owner: Owner, spec: VoiceAgentSpec, config_hash: str, default_redis_url: str
) -> dict[str, Any]:
    t = spec.transport
    env: list[dict[str, Any]] = [
        {"name": "VOICEFLEET_CONFIG", "value": f"{CONFIG_DIR}/agent.json"},
        {"name": "VOICEFLEET_REVISION", "value": config_hash},
        {"name": "VOICEFLEET_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "VOICEFLEET_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VOICEFLEET_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "VOICEFLEET_RESUME_KEY_FILE", "value": f"{RESUME_KEY_DIR}/key"},
        {"name": "VOICEFLEET_CREDENTIALS_DIR", "value": CREDENTIALS_DIR},
        {"name": "VOICEFLEET_LOG_FORMAT", "value": "json"},
    ]
    redis = redis_pod_parts(spec.redis, default_redis_url)
    env += redis.env

    resume_ref = spec.resume_key_secret_ref or SecretKeyRef(
        name=resume_key_secret_name(owner.name), key="key"
    )
    volumes: list[dict[str, Any]] = [
        # The root filesystem is read-only; the STT writes its vocabulary files here.
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "config", "configMap": {"name": f"{owner.name}-config"}},
        {
            "name": "resume-key",
            "secret": {"secretName": resume_ref.name, "items": [{"key": resume_ref.key, "path": "key"}]},
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "resume-key", "mountPath": RESUME_KEY_DIR, "readOnly": True},
    ]
    volumes += redis.volumes
    mounts += redis.mounts
    if spec.audit.enabled:
        audit_ref = spec.audit.signing_key_secret_ref or SecretKeyRef(
            name=audit_key_secret_name(owner.name), key="key"
        )
        volumes += [
            {
                "name": "audit-key",
                "secret": {"secretName": audit_ref.name, "items": [{"key": audit_ref.key, "path": "key"}]},
            },
        ]
        mounts.append({"name": "audit-key", "mountPath": AUDIT_KEY_DIR, "readOnly": True})
        env += [
            {"name": "VOICEFLEET_AUDIT_DIR", "value": AUDIT_DIR},
            {"name": "VOICEFLEET_AUDIT_KEY_FILE", "value": f"{AUDIT_KEY_DIR}/key"},
        ]
    records = records_volume(spec)
    if records is not None:
        volumes.append(records)
        mounts.append({"name": "records", "mountPath": RECORDS_DIR})
    if spec.recording.enabled:
        env.append({"name": "VOICEFLEET_RECORDINGS_DIR", "value": RECORDINGS_DIR})
    by_secret: dict[str, list[str]] = {}
    for ref in credential_refs(spec):
        by_secret.setdefault(ref.name, []).append(ref.key)
    for i, (secret, keys) in enumerate(sorted(by_secret.items())):
        volumes.append(
            {
                "name": f"cred-{i}",
                "secret": {"secretName": secret, "items": [{"key": k, "path": k} for k in keys]},
            }
        )
        mounts.append({"name": f"cred-{i}", "mountPath": f"{CREDENTIALS_DIR}/{secret}", "readOnly": True})

    ports: list[dict[str, Any]] = [
        {"name": "http", "containerPort": t.http_port, "protocol": "TCP"},
        {"name": "metrics", "containerPort": t.metrics_port, "protocol": "TCP"},
    ]
    if t.grpc.enabled:
        ports.append({"name": "grpc", "containerPort": t.grpc.port, "protocol": "TCP"})
    if t.audio_socket.enabled:
        ports.append({"name": "audiosocket", "containerPort": t.audio_socket.port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "agent",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["voicefleet", "pod"],
        "env": env,
        "ports": ports,
        "volumeMounts": mounts,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1,
            # A pod busy with live calls on a loaded node may answer late; 1 s (the default) made it flap
            # out of its Service under load. A draining pod fails at once, whatever the timeout.
            "timeoutSeconds": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # Leave routing before SIGTERM arrives: the pod marks itself draining at once.
        "lifecycle": {"preStop": {"exec": {"command": ["voicefleet", "drain", "--port", str(t.http_port)]}}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }
    resources = {k: v for k, v in spec.resources.dump().items() if v}
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": spec.session.drain_timeout_seconds + GRACE_MARGIN_SECONDS,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "enableServiceLinks": False,
        # Agent pods never call the Kubernetes API: no token to steal from a compromised pod.
        "automountServiceAccountToken": False,
    }
    if records is not None and "persistentVolumeClaim" in records:
        pod_spec["securityContext"]["fsGroup"] = 10001  # the claim's files, writable by the agent's user
    pod_spec.update(spec.pod_fields())
    return {
        "metadata": {
            "labels": pod_labels(owner.name, spec, config_hash),
            "annotations": {
                HASH_ANNOTATION: config_hash,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(t.metrics_port),
            },
        },
        "spec": pod_spec,
    }


def records_volume(spec: VoiceAgentSpec) -> dict[str, Any] | None:
    """The one volume of a pod's call records (recordings and audit logs, each in its directory): the
    recording's PVC (storage: volume), else an emptyDir (for s3, the spool of segments not yet
    uploaded). None when neither recording nor audit is on."""
    rec = spec.recording
    if not rec.enabled and not spec.audit.enabled:
        return None
    if rec.enabled and rec.storage == "volume" and rec.volume_claim:
        return {"name": "records", "persistentVolumeClaim": {"claimName": rec.volume_claim}}
    return {"name": "records", "emptyDir": {"sizeLimit": rec.volume_size_limit}}


def _generated_key_secret(owner: Owner, name: str, key: bytes) -> dict[str, Any]:
    """A key the operator generated, in a Secret the agent owns (under the Secret's key ``key``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(owner, name),
        "type": "Opaque",
        "data": {"key": base64.b64encode(key).decode()},
    }


def resume_key_secret(owner: Owner, key: bytes) -> dict[str, Any]:
    """The generated HMAC key for resume tokens (only when the spec names none)."""
    return _generated_key_secret(owner, resume_key_secret_name(owner.name), key)


def audit_key_secret(owner: Owner, seed: bytes) -> dict[str, Any]:
    """The generated Ed25519 seed audit heads are signed with (only when the spec names no key)."""
    return _generated_key_secret(owner, audit_key_secret_name(owner.name), seed)
