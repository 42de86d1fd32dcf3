"""A real Prometheus scrapes a real knowledge server process and a real agent pod process whose calls
search it; every query of the chart's knowledge dashboard then returns data through its HTTP API, and
the chart's knowledge alerts evaluate cleanly against the same series.

The knowledge server (`voicefleet knowledge serve`, the embedded SQLite store) has a configMap source
that syncs and an HTTP source nobody answers, which goes stale past its maxAgeSeconds. Both that and
the compaction run on the spec's shortest periods (60 s), so the test takes a little over a minute:
everything else happens meanwhile. The scrape config mirrors the chart's two PodMonitors.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.knowledge.spec import KnowledgeBaseConfig
from tests.knowledge.test_server import DOCS
from tests.observability.test_dashboard import (
    all_scraped,
    dashboard_queries,
    has_data,
    substitute,
    wait_for_every_query,
)
from tests.support.chart import dashboard, pod_monitor, rule_groups
from tests.support.knowledge import SOURCE, write_docs
from tests.support.net import free_port
from tests.support.pod import REPO, PodProcess, synthetic_config
from tests.support.prometheus import PrometheusServer, Target, pod_target_labels
from tests.support.wait import async_wait_for
from voicefleet.v1 import session_pb2, session_pb2_grpc
from voicefleet_operator.render import PROMPT_VERSION_LABEL, REVISION_LABEL, Owner
from voicefleet_operator.render_knowledge import render_knowledge

NAMESPACE = "shop"  # the KnowledgeBase's and the VoiceAgent's
RELEASE_NAMESPACE = "voicefleet"  # the chart's (where its PodMonitors live)
KB = "faq"
KB_POD = f"kb-{KB}-0"
SEARCH = {
    "match": "price",
    "tool": "search_knowledge",
    "arguments": {"query": "premium plan price"},
    "then": "{result}",
}


def kb_config(dead_url: str) -> KnowledgeBaseConfig:
    """A synced source in partition eu, and one nobody serves that is stale after a minute; a
    compaction every minute, whatever the free share of the store."""
    return KnowledgeBaseConfig.model_validate(
        {
            "name": KB,
            "namespace": NAMESPACE,
            "spec": {
                "sources": [
                    {"name": SOURCE, "configMap": {"name": "faq-docs"}, "partition": "eu"},
                    {"name": "prices", "http": {"url": dead_url}, "refreshSeconds": 10, "maxAgeSeconds": 60},
                ],
                "maintenance": {"compactSeconds": 60, "compactWhenFreeRatio": 0},
            },
        }
    )


@dataclass
class KnowledgeProcess:
    """`voicefleet knowledge serve` in a subprocess on free loopback ports, its pod layout under root."""

    config: KnowledgeBaseConfig
    root: Path
    http_port: int
    metrics_port: int
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def log_path(self) -> Path:
        return self.root / "kb.log"

    async def start(self) -> None:
        write_docs(self.root, DOCS)  # the configMap source's keys, as the kubelet mounts them
        config = self.root / "knowledgebase.json"
        config.write_text(self.config.model_dump_json(by_alias=True))
        env = {**os.environ, "VOICEFLEET_POD_NAME": KB_POD}
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent_pod.cli", "knowledge", "serve",
                "--config", str(config), "--root", str(self.root),
                "--secrets-dir", str(self.root / "secrets"),
                "--host", "127.0.0.1", "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), "--log-format", "json",
                cwd=REPO, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def get(self, path: str) -> Any:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise RuntimeError(f"knowledge server exited: {self.log_path.read_text()[-3000:]}")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=5)) as r,
            ):
                return await r.json() if r.status == 200 else None
        except aiohttp.ClientError:
            return None

    async def search(self, query: str, partitions: list[str]) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.url + "/v1/search",
                json={"query": query, "partitions": partitions},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r,
        ):
            assert r.status == 200, await r.text()
            return list((await r.json())["hits"])

    async def synced(self, source: str) -> bool:
        status = await self.get("/v1/status")
        return status is not None and any(
            s["name"] == source and s.get("lastSuccess") for s in status.get("sources", [])
        )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Stack:
    kb: KnowledgeProcess
    pod: PodProcess
    prometheus: PrometheusServer


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    config = kb_config(f"http://127.0.0.1:{free_port()}/prices.md")  # nobody listens there
    kb = KnowledgeProcess(config, tmp_path / "kb", free_port(), free_port())
    kb.root.mkdir()
    agent_config = synthetic_config(
        agent="desk",
        namespace=NAMESPACE,
        transport={"webrtc": {"enabled": False}},
        pipeline={"llm": {"options": {"rules": json.dumps([SEARCH])}}},
        knowledge={
            "bases": [{"name": KB, "url": kb.url}],
            "mode": "tool",
            "partitionFromMetadata": "region",
            "budgetMs": 2000,
        },
    )
    pod = PodProcess(agent_config, tmp_path, "desk-abc12-0", env={"VOICEFLEET_REVISION": "rev-1"})
    kb_monitor, agent_monitor = pod_monitor("-knowledge")["spec"], pod_monitor()["spec"]
    kb_set = render_knowledge(Owner(KB, NAMESPACE, "uid"), config.spec, "img").stateful_set
    kb_labels = kb_set["spec"]["template"]["metadata"]["labels"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    prometheus = PrometheusServer(
        tmp_path,
        targets=[
            Target(kb.metrics_address, NAMESPACE, f"{RELEASE_NAMESPACE}/vf-voicefleet-knowledge", KB_POD,
                   copied=pod_target_labels(kb_monitor.get("podTargetLabels", []), kb_labels)),
            Target(pod.metrics_address, NAMESPACE, f"{RELEASE_NAMESPACE}/vf-voicefleet-agents", pod.name,
                   copied=pod_target_labels(agent_monitor.get("podTargetLabels", []),
                                            {REVISION_LABEL: "rev-1", PROMPT_VERSION_LABEL: "none"})),
        ],
        honor_labels=bool(kb_monitor["podMetricsEndpoints"][0].get("honorLabels", False)),
        rule_files=[rules],
    )  # fmt: skip
    try:
        await kb.start()  # first: its minute to staleness and compaction starts now
        await asyncio.gather(pod.start(), asyncio.to_thread(prometheus.start))
        await async_wait_for(lambda: kb.get("/readyz"), timeout=60, what="the knowledge server ready")
        # Counts from before a target's first scrape would never show up in a rate().
        await async_wait_for(lambda: all_scraped(prometheus), timeout=30, what="every target scraped")
        yield Stack(kb, pod, prometheus)
    finally:
        await asyncio.to_thread(prometheus.stop)
        await pod.kill()
        await kb.stop()


async def asked_for_prices(pod: PodProcess, region: str) -> str:
    """A call created with metadata ``region`` (the session API) whose LLM searches for prices; what the
    agent answered (the search's result)."""
    async with grpc.aio.insecure_channel(pod.grpc_address) as channel:
        grant = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(metadata={"region": region}), timeout=10
        )
    async with GrpcCaller(
        grant.grpc_address, session_id=grant.session_id, resume_token=grant.resume_token
    ) as call:
        call.send_text("what is the price of premium")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 30)
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 30)
        return " ".join(call.recorder.summary.agent_texts)


async def test_every_knowledge_dashboard_query_returns_data(stack: Stack) -> None:
    kb, prometheus = stack.kb, stack.prometheus
    queries = dashboard_queries(dashboard("-knowledge-dashboard"))
    assert len(queries) >= 10
    await async_wait_for(lambda: kb.synced(SOURCE), timeout=60, what="the docs source synced")

    # Searches of the server: one in the docs' partition, one in a partition nothing is in.
    assert await kb.search("premium plan price", ["eu"])
    assert await kb.search("premium plan price", ["us"]) == []
    # The agent's retrieval counts are exported at 0 from its start, before any call: scraped so, the
    # first empty retrieval counts in a rate()
    await async_wait_for(
        lambda: has_data(prometheus, 'voicefleet_retrieval_empty_total{mode="tool"} == 0'),
        timeout=30,
        what="the agent's retrieval counts scraped before any call",
    )
    # Retrievals of calls: routed to the eu partition (passages), and to us (none).
    assert "49 euros" in await asked_for_prices(stack.pod, "eu")
    assert "49 euros" not in await asked_for_prices(stack.pod, "us")

    variables = {"namespace": NAMESPACE}
    # The compaction runs a minute after the server started.
    await wait_for_every_query(prometheus, queries, variables, timeout=120)

    # The agent's empty retrieval shows: half of its retrievals found nothing.
    (agent_empty,) = [e for t, e in queries if t == "Empty results" and "voicefleet_retrieval_empty" in e]
    (share,) = await prometheus.query(substitute(agent_empty, variables))
    assert float(share["value"][1]) > 0

    # The stale-source alert's expression names the dead source, not the synced one (its `for:` is
    # minutes: the expression is evaluated rather than waiting for it to fire).
    knowledge_group = {g["name"]: g for g in rule_groups()["groups"]}["voicefleet.knowledge"]
    (stale_rule,) = [r for r in knowledge_group["rules"] if r["alert"] == "KnowledgeSourceStale"]

    async def stale_sources() -> set[str] | None:
        found = {r["metric"]["source"] for r in await prometheus.query(stale_rule["expr"])}
        return found or None

    stale = await async_wait_for(stale_sources, timeout=60, what="the stale source alerted")
    assert stale == {"prices"}
    for labels in await prometheus.query(stale_rule["expr"]):
        assert labels["metric"]["namespace"] == NAMESPACE and labels["metric"]["kb"] == KB

    # The chart's rules load, and the knowledge ones evaluate without errors against these series: the
    # stale source's alert is pending (firing only after its for:).
    names = {r["alert"] for r in knowledge_group["rules"]}

    async def knowledge_rules() -> dict[str, dict[str, Any]] | None:
        loaded = (await prometheus.api("rules", type="alert"))["groups"]
        rules = {r["name"]: r for g in loaded if g["name"] == "voicefleet.knowledge" for r in g["rules"]}
        return rules if rules.get("KnowledgeSourceStale", {}).get("state") == "pending" else None

    rules = await async_wait_for(knowledge_rules, timeout=30, what="the stale source's alert pending")
    assert set(rules) == names
    assert {n: r["lastError"] for n, r in rules.items() if r["health"] != "ok"} == {}
