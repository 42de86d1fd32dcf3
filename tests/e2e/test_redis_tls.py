"""The operator reads session load from a Redis that speaks TLS only, trusting the CA the VoiceAgent
names in a Secret (a real control plane, a real TLS redis-server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_lifecycle import agent, ready, running_pods
from tests.support.kube import Cluster, OperatorProcess
from tests.support.redis import RedisServer
from tests.support.registry import Heartbeats
from tests.support.tls import make_tls
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tls=make_tls(tmp_path / "tls"))
    server.start()
    yield server
    server.cleanup()


def test_operator_reads_load_over_tls_with_the_ca_from_a_secret(
    kwok_cluster: Cluster, operator: OperatorProcess, tls_redis: RedisServer
) -> None:
    assert tls_redis.tls is not None
    ns = kwok_cluster.create_namespace()
    ca = tls_redis.tls.ca
    kwok_cluster.kubectl("create", "secret", "generic", "redis-ca", f"--from-file=ca.crt={ca}", "-n", ns)
    redis = {"url": tls_redis.url, "tls": {"caSecretRef": {"name": "redis-ca", "key": "ca.crt"}}}
    kwok_cluster.apply(agent("secure", replicas=1, redis=redis), ns)
    ready(kwok_cluster, "secure", ns, 1)
    pod = running_pods(kwok_cluster, "secure", ns)[0]["metadata"]["name"]
    env = {
        e["name"]: e.get("value")
        for e in kwok_cluster.get("deployment", "secure", ns)["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert env["VOICEFLEET_REDIS_TLS"] == "true" and env["VOICEFLEET_REDIS_URL"] == tls_redis.url
    with Heartbeats(tls_redis.url, ns, "secure", capacity=10, ssl_ca_certs=str(ca)) as beats:
        beats.set({pod: 7})
        wait_for(
            lambda: kwok_cluster.get("voiceagent", "secure", ns)["status"].get("activeSessions") == 7,
            timeout=30,
            what="status.activeSessions read over TLS",
        )
