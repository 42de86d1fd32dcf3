"""A KnowledgeBase renders to its ConfigMap, StatefulSet and Service as docs describe (pure render)."""

from __future__ import annotations

import json
from typing import Any

from agent_pod.knowledge import paths
from agent_pod.knowledge.spec import KnowledgeBaseSpec
from voicefleet_operator.render import HASH_ANNOTATION, Owner
from voicefleet_operator.render_knowledge import render_knowledge, secret_keys

OWNER = Owner(name="prices", namespace="shop", uid="uid-kb")
IMAGE = "registry.local/voicefleet-knowledge:test"


def spec(**extra: Any) -> KnowledgeBaseSpec:
    body = {"sources": [{"name": "faq", "configMap": {"name": "faq-docs", "keys": ["a.md"]}}], **extra}
    return KnowledgeBaseSpec.model_validate(body)


def container(sts: dict[str, Any]) -> dict[str, Any]:
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return dict(c)


def mounts(sts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(sts)["volumeMounts"]}


def volumes(sts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}


def test_children_are_named_owned_and_labelled() -> None:
    kids = render_knowledge(OWNER, spec(), IMAGE)
    for obj in kids.all():
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == ("kb-prices", "shop")
        (ref,) = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "KnowledgeBase",
            "prices",
            "uid-kb",
            True,
        )
        assert meta["labels"]["voicefleet.io/knowledgebase"] == "prices"
        assert meta["labels"]["app.kubernetes.io/component"] == "knowledge-server"
    selector = kids.stateful_set["spec"]["selector"]["matchLabels"]
    assert kids.service["spec"]["selector"] == selector
    assert selector.items() <= kids.stateful_set["spec"]["template"]["metadata"]["labels"].items()


def test_config_map_holds_name_namespace_and_spec_mounted_at_the_config_file() -> None:
    kids = render_knowledge(OWNER, spec(), IMAGE)
    config = json.loads(kids.config_map["data"][paths.CONFIG_FILE.name])
    assert (config["name"], config["namespace"]) == ("prices", "shop")
    assert KnowledgeBaseSpec.model_validate(config["spec"]) == spec()
    mount = mounts(kids.stateful_set)[str(paths.CONFIG_FILE)]
    assert mount["subPath"] == paths.CONFIG_FILE.name and mount["readOnly"]


def test_the_server_runs_the_knowledge_image_with_probes_ports_and_no_root() -> None:
    kids = render_knowledge(OWNER, spec(), IMAGE)
    c = container(kids.stateful_set)
    assert c["image"] == IMAGE and c["command"] == ["voicefleet", "knowledge", "serve"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "metrics": 9090}
    assert (
        c["securityContext"]["readOnlyRootFilesystem"]
        and not c["securityContext"]["allowPrivilegeEscalation"]
    )
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
    pod = kids.stateful_set["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] and not pod["spec"]["automountServiceAccountToken"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    ports = {p["name"]: p["port"] for p in kids.service["spec"]["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}


def test_the_pods_are_placed_as_the_spec_says() -> None:
    assert (
        "nodeSelector" not in render_knowledge(OWNER, spec(), IMAGE).stateful_set["spec"]["template"]["spec"]
    )
    toleration = {"key": "voicefleet.io/node", "operator": "Exists", "effect": "NoSchedule"}
    affinity: dict[str, Any] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    placed = spec(nodeSelector={"disk": "ssd"}, tolerations=[toleration], affinity=affinity)
    pod = render_knowledge(OWNER, placed, IMAGE).stateful_set["spec"]["template"]["spec"]
    assert (pod["nodeSelector"], pod["tolerations"], pod["affinity"]) == (
        {"disk": "ssd"},
        [toleration],
        affinity,
    )


def test_sqlite_store_is_a_claim_of_its_size_and_ephemeral_or_pgvector_an_empty_dir() -> None:
    sts = render_knowledge(OWNER, spec(store={"sqlite": {"size": "5Gi", "storageClassName": "fast"}}), IMAGE)
    (claim,) = sts.stateful_set["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "store"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert "store" not in volumes(sts.stateful_set)
    assert mounts(sts.stateful_set)[str(paths.STORE)]["name"] == "store"
    ephemeral = render_knowledge(OWNER, spec(store={"sqlite": {"ephemeral": True}}), IMAGE).stateful_set
    assert "volumeClaimTemplates" not in ephemeral["spec"] and "emptyDir" in volumes(ephemeral)["store"]
    pg = {"type": "pgvector", "pgvector": {"dsnSecretRef": {"name": "pg", "key": "dsn"}}}
    pgvector = render_knowledge(OWNER, spec(store=pg, replicas=3), IMAGE).stateful_set
    assert pgvector["spec"]["replicas"] == 3 and "volumeClaimTemplates" not in pgvector["spec"]
    assert mounts(pgvector)[str(paths.SECRETS / "pg")]["readOnly"]


def test_sources_and_secrets_are_mounted_where_the_server_reads_them() -> None:
    sources = [
        {"name": "faq", "configMap": {"name": "faq-docs", "keys": ["a.md"]}},
        {"name": "manuals", "files": {"claimName": "manuals-pvc", "path": "/en"}},
        {"name": "local", "files": {"path": "/drop"}},
        {
            "name": "prices",
            "http": {"url": "https://x/p.md", "headersSecretRef": {"name": "web", "key": "h"}},
        },
        {
            "name": "bucket",
            "s3": {"endpoint": "https://s3", "bucket": "docs", "credentialsSecretRef": "s3-keys"},
        },
    ]
    embedding = {"provider": "openai", "credentialsSecretRef": {"name": "web", "key": "openai"}}
    kb = spec(sources=sources, embedding=embedding)
    sts = render_knowledge(OWNER, kb, IMAGE).stateful_set
    by_path, vols = mounts(sts), volumes(sts)
    cm = vols[by_path[str(paths.config_map_dir("faq"))]["name"]]["configMap"]
    assert cm == {"name": "faq-docs", "optional": True, "items": [{"key": "a.md", "path": "a.md"}]}
    pvc = vols[by_path[str(paths.files_dir("manuals"))]["name"]]["persistentVolumeClaim"]
    assert pvc == {"claimName": "manuals-pvc", "readOnly": True}
    assert str(paths.files_dir("local")) not in by_path  # on the store volume
    assert secret_keys(kb) == {"s3-keys": ["accessKeyId", "secretAccessKey"], "web": ["h", "openai"]}
    for secret, keys in secret_keys(kb).items():
        vol = vols[by_path[str(paths.SECRETS / secret)]["name"]]["secret"]
        assert vol["secretName"] == secret and [i["key"] for i in vol["items"]] == keys


def test_a_spec_change_rolls_the_pods_and_the_same_spec_renders_the_same() -> None:
    a = render_knowledge(OWNER, spec(), IMAGE)
    assert render_knowledge(OWNER, spec(), IMAGE) == a
    b = render_knowledge(OWNER, spec(search={"mode": "keyword"}), IMAGE)
    hashes = [k.stateful_set["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION] for k in (a, b)]
    assert hashes[0] != hashes[1]
    assert render_knowledge(OWNER, spec(), "other:1").config_hash != a.config_hash
