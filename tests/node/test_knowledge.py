"""A knowledge base on the real node: the operator runs its knowledge server from the knowledge image
(the Dockerfile's target `knowledge`, without the audio stack), the server ingests a ConfigMap mounted by
the kubelet, the operator copies the server's status into the KnowledgeBase (through the API server's
service proxy), and an agent pod's call (the agent image, without the stores) retrieves from it by the
base's Service name. Removing a document from the ConfigMap removes it from the index; an annotation
requests a backfill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_pod.client.grpc_client import GrpcCaller
from tests.support.node import Release
from tests.support.wait import async_wait_for, wait_for
from voicefleet_operator.devnode import knowledge_image, pod_placement
from voicefleet_operator.render_knowledge import selector_labels

pytestmark = pytest.mark.e2e

BASE = "help"
AGENT = "helpdesk"
ARTICLES = {
    "opening-hours.md": "# Opening hours\n\nOur shops are open Monday to Saturday from nine to seven.\n",
    "returns.md": "# Returns\n\nPhones can be returned within fourteen days in their original box.\n",
    "roaming.md": "# Roaming\n\nRoaming in Europe costs ten dollars a day on the Unlimited plan.\n",
}
RULES = (
    '[{"match": "open", "say": "Let me look.", "tool": "search_knowledge",'
    ' "arguments": {"query": "when are the shops open"}, "then": "{result[passages][0][text]}"}]'
)
AGENT_SPEC: dict[str, Any] = {
    "replicas": 1,
    "autoscaling": {"enabled": False, "sessionsPerPod": 20},
    "pipeline": {
        "vad": {"provider": "energy"},
        "stt": {"provider": "synthetic"},
        "llm": {"provider": "scripted", "options": {"rules": RULES}},
        "tts": {"provider": "synthetic", "options": {"ms_per_char": "5"}},
        "compliance": {"audit": False},
    },
    "prompt": {"inline": "You answer from the help articles.", "version": "v1"},
    "transport": {"grpc": {"enabled": True, "port": 50051}, "webrtc": {"enabled": False}},
    "knowledge": {"selector": {"matchLabels": {"team": "support"}}, "mode": "tool", "budgetMs": 1000},
}


def articles(release: Release, docs: dict[str, str]) -> None:
    meta = {"name": "help-articles"}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": docs}
    release.cluster.apply(yaml.safe_dump(config_map), namespace=release.namespace)


def base(release: Release) -> dict[str, Any]:
    return release.cluster.get("knowledgebase", BASE, namespace=release.namespace)


def base_with(release: Release, documents: int) -> dict[str, Any] | None:
    status = base(release).get("status", {})
    ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
    return status if status.get("documents") == documents and ready == "True" else None


@pytest.fixture(scope="module")
def knowledge(fleet_release: Release) -> Iterator[Release]:
    articles(fleet_release, ARTICLES)
    manifest = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "KnowledgeBase",
        "metadata": {"name": BASE, "labels": {"team": "support"}},
        "spec": {
            "sources": [
                {
                    "name": "articles",
                    "configMap": {"name": "help-articles"},
                    "chunking": {"strategy": "markdown"},
                    "refreshSeconds": 10,
                }
            ],
            "store": {"sqlite": {"ephemeral": True}},  # the node has no volume provisioner
            **pod_placement(),
        },
    }
    fleet_release.cluster.apply(yaml.safe_dump(manifest), namespace=fleet_release.namespace)
    fleet_release.apply_agent(AGENT, AGENT_SPEC)
    yield fleet_release
    for kind, name in (("voiceagent", AGENT), ("knowledgebase", BASE), ("configmap", "help-articles")):
        fleet_release.cluster.kubectl("delete", kind, name, "-n", fleet_release.namespace, check=False)


@pytest.mark.timeout(600)
async def test_a_call_retrieves_from_a_base_the_operator_runs_and_a_removed_article_leaves_it(
    knowledge: Release, node_images: dict[str, Path]
) -> None:
    status = await asyncio.to_thread(
        wait_for, lambda: base_with(knowledge, 3), timeout=300, interval=2, what="the base ingested"
    )
    assert status["chunks"] >= 3 and status["embeddingModel"].startswith("wordllama/")
    assert status["lastSuccessTime"] and not status["staleSources"] and not status["errors"]
    listed = knowledge.cluster.kubectl("get", "kb", BASE, "-n", knowledge.namespace).stdout
    assert "DOCUMENTS" in listed.splitlines()[0] and " 3 " in listed.splitlines()[1], listed
    servers = knowledge.ready_pods(",".join(f"{k}={v}" for k, v in selector_labels(BASE).items()))
    assert [c["image"] for p in servers for c in p["spec"]["containers"]] == [knowledge_image(node_images)]

    agent = await asyncio.to_thread(knowledge.wait_agent_serving, AGENT, 1)
    assert agent["metadata"]["name"] == AGENT
    async with GrpcCaller(knowledge.service_address(AGENT, "grpc")) as call:
        call.send_text("when are you open")
        summary = await call.recorder.wait(
            lambda s: any("Monday to Saturday" in t for t in s.agent_texts), within=60
        )
        assert summary.errors == []

    articles(knowledge, {k: v for k, v in ARTICLES.items() if k != "returns.md"})

    async def shrunk() -> dict[str, Any] | None:
        return await asyncio.to_thread(base_with, knowledge, 2)

    # The kubelet refreshes a ConfigMap volume within about a minute; the server syncs every 10 s.
    await async_wait_for(shrunk, timeout=240, interval=2, what="the removed article gone from the base")

    # A backfill on request: the operator posts /v1/sync to the server through the service proxy.
    knowledge.cluster.kubectl(
        "annotate",
        "kb",
        BASE,
        "-n",
        knowledge.namespace,
        "knowledge.voicefleet.io/sync-requested=1",
        "--overwrite",
    )

    def sync_requested() -> str | None:
        events = knowledge.cluster.kubectl(
            "get",
            "events",
            "-n",
            knowledge.namespace,
            "--field-selector",
            "reason=SyncRequested",
            "-o",
            "name",
        ).stdout
        return events or None

    await asyncio.to_thread(
        wait_for, sync_requested, timeout=60, interval=1, what="the sync request delivered"
    )
