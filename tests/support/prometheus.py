"""A real Prometheus (Debian's binary) on a free loopback port, with a generated config and a temp TSDB.

``scrape_configs`` mirror what the Prometheus Operator makes of the chart's monitors: one job for the
operator's Service (ServiceMonitor: namespace, service, pod, endpoint labels) and one for the agent
pods (PodMonitor: namespace, pod, endpoint labels, and the pod labels its podTargetLabels name), and
the monitors' honorLabels.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.processes import stop_process

from .net import free_port
from .wait import wait_for

SCRAPE_INTERVAL = "1s"


def pod_target_labels(names: list[str], pod_labels: dict[str, str]) -> dict[str, str]:
    """The target labels a PodMonitor's ``podTargetLabels`` make of a pod's labels: each name with every
    character a Prometheus label name cannot hold turned into "_" (as the Prometheus Operator does)."""
    return {re.sub(r"[^a-zA-Z0-9_]", "_", n): pod_labels[n] for n in names if pod_labels.get(n)}


@dataclass
class Target:
    """One scraped endpoint as a ServiceMonitor (``service`` set) or the PodMonitor discovers it."""

    address: str  # host:port
    namespace: str
    job: str
    pod: str
    service: str | None = None
    copied: dict[str, str] = field(default_factory=dict)  # pod labels copied onto the target

    def labels(self) -> dict[str, str]:
        labels = {**self.copied, "namespace": self.namespace, "pod": self.pod, "endpoint": "metrics"}
        if self.service:
            labels["service"] = self.service
        return labels


@dataclass
class PrometheusServer:
    workdir: Path
    targets: list[Target]
    honor_labels: bool
    rule_files: list[Path] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        jobs: dict[str, list[Target]] = {}
        for target in self.targets:
            jobs.setdefault(target.job, []).append(target)
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "honor_labels": self.honor_labels,
                    "static_configs": [{"targets": [t.address], "labels": t.labels()} for t in targets],
                }
                for job, targets in jobs.items()
            ],
        }

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError(
                "prometheus is not installed (apt-get install prometheus; hack/bootstrap.sh does)"
            )
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = self.workdir / "prometheus.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._ready, timeout=30, what="prometheus ready")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the response's data (raises on an API error)."""
        query = urllib.parse.urlencode(params)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/{path}?{query}", timeout=aiohttp.ClientTimeout(total=10)) as r,
        ):
            body = json.loads(await r.text())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def stop(self) -> None:
        stop_process(self.process, grace=30)
