"""What a KnowledgeBase becomes: a ConfigMap with its spec, a StatefulSet running the knowledge server
(the knowledge image, `voicefleet knowledge serve`) and a Service. Pure, like render.py: the same spec
renders the same objects, which the reconciler applies with server-side apply."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agent_pod.knowledge import paths
from agent_pod.knowledge.spec import KnowledgeBaseSpec

from .render import HASH_ANNOTATION, MANAGED_BY, Owner
from .spec import GROUP, VERSION
from .spec_knowledge import KB_KIND

KB_LABEL = "voicefleet.io/knowledgebase"
COMPONENT = "knowledge-server"
CONFIG_KEY = paths.CONFIG_FILE.name
RUN_AS = 10001  # the knowledge image's user (the Dockerfile's), as for agent pods
S3_KEYS = ("accessKeyId", "secretAccessKey")  # S3Source.credentials_secret_ref names a whole Secret


@dataclass(frozen=True)
class KnowledgeChildren:
    config_map: dict[str, Any]
    stateful_set: dict[str, Any]
    service: dict[str, Any]
    config_hash: str

    def all(self) -> list[dict[str, Any]]:
        return [self.config_map, self.service, self.stateful_set]


def selector_labels(kb: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "voicefleet-knowledge", "app.kubernetes.io/instance": kb, KB_LABEL: kb}


def labels(kb: str) -> dict[str, str]:
    return {
        **selector_labels(kb),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "voicefleet",
    }


def service_url(kb: str, namespace: str) -> str:
    """Where agents reach a base's knowledge server."""
    return f"http://{paths.resource_name(kb)}.{namespace}.svc:{paths.HTTP_PORT}"


def _meta(owner: Owner) -> dict[str, Any]:
    return {
        "name": paths.resource_name(owner.name),
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KB_KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def secret_keys(spec: KnowledgeBaseSpec) -> dict[str, list[str]]:
    """Every Secret the server reads, with the keys it needs, in a stable order."""
    keys: dict[str, set[str]] = {}
    refs = [
        spec.embedding.credentials_secret_ref,
        spec.store.pgvector.dsn_secret_ref if spec.store.pgvector else None,
    ]
    for source in spec.sources:
        if source.http is not None:
            refs.append(source.http.headers_secret_ref)
        if source.s3 is not None and source.s3.credentials_secret_ref:
            keys.setdefault(source.s3.credentials_secret_ref, set()).update(S3_KEYS)
    for ref in refs:
        if ref is not None:
            keys.setdefault(ref.name, set()).add(ref.key)
    return {name: sorted(keys[name]) for name in sorted(keys)}


def render_knowledge(owner: Owner, spec: KnowledgeBaseSpec, image: str) -> KnowledgeChildren:
    """All children of a KnowledgeBase; ``image`` is the knowledge image (the operator's setting)."""
    config_json = json.dumps(
        {"name": owner.name, "namespace": owner.namespace, "spec": spec.dump()}, sort_keys=True, indent=1
    )
    # The config is mounted by subPath (no live update): the hash on the pod template rolls the pods.
    config_hash = hashlib.sha256(json.dumps([config_json, image]).encode()).hexdigest()[:16]
    name = paths.resource_name(owner.name)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner),
        "data": {CONFIG_KEY: config_json},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name),
            "ports": [
                {"name": "http", "port": paths.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": paths.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    sts_spec: dict[str, Any] = {
        "replicas": spec.replicas,
        "serviceName": name,
        # Serving replicas need no order; ordinal 0 is the one that ingests.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector_labels(owner.name)},
        "template": _pod_template(owner, spec, image, config_hash),
    }
    claim = _store_claim(spec)
    if claim is not None:
        sts_spec["volumeClaimTemplates"] = [claim]
    meta = _meta(owner)
    meta["annotations"] = {HASH_ANNOTATION: config_hash}
    stateful_set = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": sts_spec}
    return KnowledgeChildren(config_map, stateful_set, service, config_hash)


def _store_claim(spec: KnowledgeBaseSpec) -> dict[str, Any] | None:
    """The sqlite store's claim; None when the store lives in an emptyDir (ephemeral, or pgvector)."""
    sqlite = spec.store.sqlite
    if spec.store.type != "sqlite" or sqlite.ephemeral:
        return None
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": sqlite.size}},
    }
    if sqlite.storage_class_name:
        claim_spec["storageClassName"] = sqlite.storage_class_name
    return {"metadata": {"name": "store"}, "spec": claim_spec}


def _pod_template(owner: Owner, spec: KnowledgeBaseSpec, image: str, config_hash: str) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},  # the root filesystem is read-only
        {"name": "config", "configMap": {"name": paths.resource_name(owner.name)}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "config", "mountPath": str(paths.CONFIG_FILE), "subPath": CONFIG_KEY, "readOnly": True},
        {"name": "store", "mountPath": str(paths.STORE)},
    ]
    if _store_claim(spec) is None:
        volumes.append({"name": "store", "emptyDir": {}})
    for i, source in enumerate(spec.sources):
        if source.config_map is not None:
            cm: dict[str, Any] = {
                "name": source.config_map.name,
                "optional": True,
            }  # a missing one is a source error
            if source.config_map.keys:
                cm["items"] = [{"key": k, "path": k} for k in source.config_map.keys]
            volumes.append({"name": f"source-{i}", "configMap": cm})
            mounts.append(
                {"name": f"source-{i}", "mountPath": str(paths.config_map_dir(source.name)), "readOnly": True}
            )
        if source.files is not None and source.files.claim_name:
            claim = {"claimName": source.files.claim_name, "readOnly": True}
            volumes.append({"name": f"source-{i}", "persistentVolumeClaim": claim})
            mounts.append(
                {"name": f"source-{i}", "mountPath": str(paths.files_dir(source.name)), "readOnly": True}
            )
    for i, (secret, keys) in enumerate(secret_keys(spec).items()):
        items = [{"key": k, "path": k} for k in keys]
        volumes.append({"name": f"secret-{i}", "secret": {"secretName": secret, "items": items}})
        mounts.append({"name": f"secret-{i}", "mountPath": str(paths.SECRETS / secret), "readOnly": True})
    container: dict[str, Any] = {
        "name": "knowledge",
        "image": image,
        "command": ["voicefleet", "knowledge", "serve"],
        "env": [
            {"name": "VOICEFLEET_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "VOICEFLEET_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "VOICEFLEET_LOG_FORMAT", "value": "json"},
            {"name": "HOME", "value": "/tmp"},  # libraries that cache under ~ write to the emptyDir
        ],
        "ports": [
            {"name": "http", "containerPort": paths.HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": paths.METRICS_PORT, "protocol": "TCP"},
        ],
        "volumeMounts": mounts,
        # Ready once an index is open and searchable; the first ingestion of a large base takes a while.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = {k: v for k, v in spec.resources.dump().items() if v}
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        # fsGroup: the store claim's files are writable by the server's user.
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "fsGroup": RUN_AS},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # the server never calls the Kubernetes API
        **spec.pod_fields(),
    }
    return {
        "metadata": {
            "labels": labels(owner.name),
            "annotations": {
                HASH_ANNOTATION: config_hash,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(paths.METRICS_PORT),
            },
        },
        "spec": pod_spec,
    }
