"""KnowledgeBases on a real API server (KWOK): invalid ones are refused naming the field, the operator
renders a base's children, and a VoiceAgent selecting bases by label gets their URLs in its config."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.kube import Cluster, OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

CM = {"name": "faq", "configMap": {"name": "faq-docs"}}
PG = {"type": "pgvector", "pgvector": {"dsnSecretRef": {"name": "pg", "key": "dsn"}}}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no sources", {"sources": []}, "spec.sources"),
    (
        "two kinds in one source",
        {"sources": [{**CM, "http": {"url": "https://x/a"}}]},
        "exactly one of configMap",
    ),
    ("no kind in a source", {"sources": [{"name": "faq"}]}, "exactly one of configMap"),
    (
        "duplicate source names",
        {"sources": [CM, {**CM, "configMap": {"name": "other"}}]},
        "sources[].name must be unique",
    ),
    ("replicas on sqlite", {"sources": [CM], "replicas": 2}, "replicas above 1 need store.type pgvector"),
    ("bad source name", {"sources": [{**CM, "name": "FAQ docs"}]}, "spec.sources[0].name"),
    (
        "bad ConfigMap name",
        {"sources": [{**CM, "configMap": {"name": "Bad_Name"}}]},
        "spec.sources[0].configMap.name",
    ),
    (
        "pgvector without its config",
        {"sources": [CM], "store": {"type": "pgvector"}},
        "store.pgvector is required",
    ),
    (
        "http URL not http",
        {"sources": [{"name": "w", "http": {"url": "file:///etc"}}]},
        "spec.sources[0].http.url",
    ),
    ("refresh too often", {"sources": [{**CM, "refreshSeconds": 1}]}, "spec.sources[0].refreshSeconds"),
    ("unknown embedder", {"sources": [CM], "embedding": {"provider": "bert"}}, "spec.embedding.provider"),
    ("unknown field", {"sources": [CM], "vectors": 3}, "spec.vectors"),
]


def kb(name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    return {"apiVersion": "voicefleet.io/v1alpha1", "kind": "KnowledgeBase", "metadata": meta, "spec": spec}


def served(cluster: Cluster) -> None:
    wait_for(
        lambda: cluster.kubectl("get", "knowledgebases", check=False).returncode == 0,
        timeout=30,
        what="KnowledgeBase API served",
    )


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_knowledge_base_is_rejected_naming_the_field(
    kwok_cluster: Cluster, case: str, spec: dict[str, Any], field: str
) -> None:
    served(kwok_cluster)
    body = json.dumps(kb("bad", spec))
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=body, check=False)
    assert out.returncode != 0, f"{case}: the API server accepted it"
    assert field in out.stderr, f"{case}: message does not name {field}: {out.stderr}"


def test_valid_knowledge_bases_get_defaults_and_explain_text(kwok_cluster: Cluster) -> None:
    served(kwok_cluster)
    body = json.dumps(
        kb(
            "ok",
            {"sources": [CM, {"name": "web", "http": {"url": "https://x/p"}}], "store": PG, "replicas": 3},
        )
    )
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=body)
    spec = json.loads(out.stdout)["spec"]
    assert spec["sources"][0]["chunking"]["strategy"] == "paragraph"
    assert spec["embedding"]["provider"] == "wordllama" and spec["search"]["mode"] == "hybrid"
    explain = kwok_cluster.kubectl("explain", "kb.spec.sources.onStale").stdout
    assert "withhold" in explain


def test_the_operator_renders_a_base_and_agents_selecting_it_by_label_get_its_url(
    kwok_cluster: Cluster, operator: OperatorProcess
) -> None:
    served(kwok_cluster)
    ns = kwok_cluster.create_namespace()
    agent = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": "desk"},
        "spec": {
            "knowledge": {"selector": {"matchLabels": {"region": "eu"}}, "baseLabelFromMetadata": "region"}
        },
    }
    kwok_cluster.apply(json.dumps(agent), ns)

    def rendered_bases() -> list[dict[str, Any]]:
        cm = kwok_cluster.get("configmap", "desk-config", ns, check=False)
        if not cm:
            return []
        knowledge = json.loads(cm["data"]["agent.json"]).get("knowledge") or {}
        return list(knowledge.get("bases", []))

    wait_for(
        lambda: kwok_cluster.exists("configmap", "desk-config", ns), timeout=60, what="the agent rendered"
    )
    assert rendered_bases() == []
    kwok_cluster.apply(json.dumps(kb("prices", {"sources": [CM]}, {"region": "eu"})), ns)
    kwok_cluster.apply(json.dumps(kb("other", {"sources": [CM]}, {"region": "us"})), ns)
    wait_for(lambda: rendered_bases() != [], timeout=60, what="the base in the agent's config")
    assert rendered_bases() == [
        {"name": "prices", "url": f"http://kb-prices.{ns}.svc:8080", "labels": {"region": "eu"}}
    ]
    # The base's children, owned by it.
    wait_for(lambda: kwok_cluster.exists("statefulset", "kb-prices", ns), timeout=60, what="the StatefulSet")
    sts = kwok_cluster.get("statefulset", "kb-prices", ns)
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "KnowledgeBase"
    assert sts["spec"]["template"]["spec"]["containers"][0]["command"] == ["voicefleet", "knowledge", "serve"]
    assert kwok_cluster.exists("service", "kb-prices", ns) and kwok_cluster.exists(
        "configmap", "kb-prices", ns
    )
    # Relabelled: the agent follows.
    kwok_cluster.kubectl("label", "kb", "other", "region=eu", "--overwrite", "-n", ns)
    wait_for(lambda: len(rendered_bases()) == 2, timeout=60, what="the relabelled base in the agent's config")

    # No knowledge server answers on KWOK: the status says so rather than staying empty.
    def ready_reason() -> str:
        conds = kwok_cluster.get("kb", "prices", ns).get("status", {}).get("conditions", [])
        return next((c["reason"] for c in conds if c["type"] == "Ready"), "")

    wait_for(lambda: ready_reason() == "ServerUnreachable", timeout=60, what="the KnowledgeBase status")
    row = kwok_cluster.kubectl("get", "kb", "prices", "-n", ns).stdout.split("\n")[0].split()
    assert row == ["NAME", "READY", "DOCUMENTS", "CHUNKS", "LAST", "SYNC", "STALE", "AGE"]

    # A backfill request: the operator's handler fires and, with no server to answer, keeps retrying.
    kwok_cluster.kubectl("annotate", "kb", "prices", "knowledge.voicefleet.io/sync-requested=1", "-n", ns)
    wait_for(
        lambda: "sync request not delivered" in operator.log.read_text(), timeout=60, what="the sync handler"
    )
    assert "Indexer 'agent_pods' failed" not in operator.log.read_text()  # a knowledge server is no agent pod
