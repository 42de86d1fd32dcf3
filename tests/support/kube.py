"""The real control plane for e2e tests: a KWOK cluster and the operator as a process.

``kwok_cluster`` (one per test session) runs etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and the KWOK controller from the cached
binaries, with the VoiceAgent CRD installed. ``operator`` runs
``voicefleet-operator run`` against it as a subprocess, so tests can restart it.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import stop_process
from voicefleet_operator.devcluster import REPO, KwokCluster, kube_bin_dir

from .net import free_port
from .redis import RedisServer
from .wait import wait_for

CRDS = REPO / "crds"


class Cluster:
    """A KwokCluster with the conveniences tests need."""

    def __init__(self, kwok: KwokCluster) -> None:
        self.kwok = kwok

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.kwok.kubectl(*args, check=check, stdin=stdin)

    def get(
        self, kind: str, name: str = "", namespace: str = "default", check: bool = True
    ) -> dict[str, Any]:
        args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
        out = self.kubectl(*args, check=check)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def exists(self, kind: str, name: str, namespace: str = "default") -> bool:
        return self.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0

    def apply(self, manifest: str, namespace: str = "default") -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest)

    def create_namespace(self) -> str:
        name = "t-" + uuid.uuid4().hex[:8]
        self.kubectl("create", "namespace", name)
        return name


class OperatorProcess:
    def __init__(
        self,
        cluster: Cluster,
        redis_url: str,
        extra_env: dict[str, str] | None = None,
        namespaces: Sequence[str] = (),
    ) -> None:
        self.cluster = cluster
        self.redis_url = redis_url
        self.extra_env = extra_env or {}
        self.namespaces = namespaces  # empty: every namespace
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log = Path(cluster.kwok.workdir) / f"operator-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, leader_election: bool = False, identity: str = "") -> None:
        env = {
            "VOICEFLEET_STATUS_MIN_INTERVAL": "1",
            "VOICEFLEET_OBSERVE_INTERVAL": "1",
            "VOICEFLEET_KB_OBSERVE_INTERVAL": "1",
            "VOICEFLEET_COST_REFRESH_INTERVAL": "5",
            **({"POD_NAME": identity} if identity else {}),
            **self.extra_env,
        }
        self.process = self.cluster.kwok.start_operator(
            self.redis_url,
            self.log,
            metrics_port=self.metrics_port,
            health_port=self.health_port,
            leader_election=leader_election,
            namespaces=self.namespaces,
            env=env,
        )
        if not leader_election:
            wait_for(self.healthy, timeout=60, what="operator liveness endpoint")

    def healthy(self) -> bool:
        import urllib.request

        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def stop(self) -> None:
        stop_process(self.process, grace=30)


@pytest.fixture(scope="session")
def kwok_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("kwok")
    kwok = KwokCluster(name=f"vf-{uuid.uuid4().hex[:6]}", bin_dir=kube_bin_dir(), workdir=workdir)
    kwok.create(nodes=3)
    cluster = Cluster(kwok)
    try:
        cluster.kubectl("apply", "-f", str(CRDS))
        wait_for(
            lambda: cluster.kubectl("get", "voiceagents", check=False).returncode == 0,
            timeout=30,
            what="VoiceAgent API served",
        )
        yield cluster
    finally:
        if not os.environ.get("VOICEFLEET_KEEP_CLUSTER"):
            kwok.delete()


@pytest.fixture(scope="module")
def operator(kwok_cluster: Cluster, redis_server: RedisServer) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(kwok_cluster, redis_server.url)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
