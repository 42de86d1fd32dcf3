"""Redis high-availability setups started by the tests: a Sentinel group and a Redis Cluster.

``SentinelGroup``: one master, replicas and three sentinels (Debian's redis-sentinel, or
redis-server in sentinel mode) with a short down-after time, so a killed master is replaced
within seconds. ``RedisClusterNodes``: masters in cluster mode joined with
``redis-cli --cluster create``. Both can serve TLS with the certificate of tests.support.tls.
Fixture: ``sentinel_group`` (1 master, 2 replicas, 3 sentinels, a test's own).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from .net import free_port
from .redis import RedisServer
from .tls import TLSFiles
from .wait import wait_for

MASTER_NAME = "vfmaster"
DOWN_AFTER_MS = 1000


def sync_client(host: str, port: int, tls: TLSFiles | None, password: str | None = None) -> Redis:
    options: dict[str, Any] = {"socket_timeout": 2, "decode_responses": True, "password": password}
    if tls is not None:
        options.update(ssl=True, ssl_ca_certs=str(tls.ca))
    return Redis(host=host, port=port, **options)


def online_replicas(info: dict[str, Any]) -> int:
    """Replicas a master's INFO replication lists as online."""
    return sum(
        1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v["state"] == "online"
    )


class Sentinel:
    def __init__(
        self,
        master: RedisServer,
        quorum: int,
        tls: TLSFiles | None,
        password: str | None = None,
        master_password: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix="vf-sentinel-"))
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"bind {self.host}",
            f"dir {self.dir}",
            f"logfile {self.dir / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} {master.host} {master.port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} 5000",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        self.password = password
        if password:  # callers and the other sentinels must authenticate
            lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
        if master_password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {master_password}")
        if tls is None:
            lines.insert(0, f"port {self.port}")
        else:  # sentinels speak TLS to callers and to the data nodes
            lines[:0] = [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {tls.cert}",
                f"tls-key-file {tls.key}",
                f"tls-ca-cert-file {tls.ca}",
                "tls-auth-clients no",
                "tls-replication yes",
            ]
        self.config = self.dir / "sentinel.conf"  # sentinel rewrites it: a file of its own
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-sentinel")
        command = [binary, str(self.config)] if binary else ["redis-server", str(self.config), "--sentinel"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> Redis:
        return sync_client(self.host, self.port, self.tls, self.password)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        tls: TLSFiles | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """``password``: the data nodes'; ``sentinel_password``: the sentinels'."""
        self.tls = tls
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.master = RedisServer(tls=tls, extra=auth)
        self.replicas = [
            RedisServer(tls=tls, extra=[*auth, "--replicaof", self.master.host, str(self.master.port)])
            for _ in range(replicas)
        ]
        self.sentinels = [
            Sentinel(self.master, quorum=2, tls=tls, password=sentinel_password, master_password=password)
            for _ in range(sentinels)
        ]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(s.address for s in self.sentinels)

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, within: float = 30.0) -> None:
        self.master.start()
        for replica in self.replicas:
            replica.start()
        wait_for(lambda: self._replicas_online() == len(self.replicas), timeout=within, what="replication")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(self._sentinels_see_everyone, timeout=within, what="sentinels ready")

    def _replicas_online(self) -> int:
        with sync_client(self.master.host, self.master.port, self.tls, self.password) as client:
            info = client.info("replication")
        return online_replicas(info)

    def _sentinels_see_everyone(self) -> bool:
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    master = client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            except Exception:
                return False
            fields = dict(zip(master[::2], master[1::2], strict=True)) if isinstance(master, list) else master
            if int(fields.get("num-other-sentinels", 0)) < len(self.sentinels) - 1 or len(replicas) < len(
                self.replicas
            ):
                return False
        return True

    def master_address(self) -> str:
        with self.sentinels[0].client() as client:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return f"{host}:{port}"

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns it (dead)."""
        address = self.master_address()
        master = next(s for s in self.servers if s.address == address)
        assert master.process is not None
        master.process.kill()
        master.process.wait(timeout=10)
        return master

    def wait_failover(self, old: str, within: float = 30.0) -> float:
        """Wait until the sentinels name a new master; returns when (time.monotonic)."""
        wait_for(lambda: self.master_address() != old, timeout=within, what="sentinel failover")
        return time.monotonic()

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.cleanup()


class RedisClusterNodes:
    """``masters`` redis-servers in cluster mode (each with ``replicas``), joined into one cluster by
    redis-cli."""

    def __init__(self, masters: int = 3, tls: TLSFiles | None = None, replicas: int = 0) -> None:
        self.replicas = replicas
        self.tls = tls
        cluster = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
        ]
        # the bus port gets a free port of its own (the default, port + 10000, may be taken)
        self.nodes = [
            RedisServer(tls=tls, extra=[*cluster, "--cluster-port", str(free_port())])
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """A seed node."""
        return self.nodes[0].url

    def start(self, within: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        command = ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes), "--cluster-yes"]
        command += ["--cluster-replicas", str(self.replicas)]
        if self.tls is not None:
            command[1:1] = ["--tls", "--cacert", str(self.tls.ca)]
        subprocess.run(command, check=True, capture_output=True, timeout=within)
        wait_for(self._ok, timeout=within, what="cluster state ok on every node")
        # a replica that never finished its first sync cannot take over: wait for every one
        wait_for(self._replicas_synced, timeout=within, what="cluster replicas in sync")

    def _replicas_synced(self) -> bool:
        online = 0
        for node in self.nodes:
            with sync_client(node.host, node.port, self.tls) as client:
                info = client.info("replication")
            online += online_replicas(info)
        return online == len(self.nodes) - len(self.nodes) // (1 + self.replicas)

    def master_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        for node in self.nodes:
            if not node.running:
                continue
            with sync_client(node.host, node.port, self.tls) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        address = f"{master[0]}:{master[1]}"
                        return next(n for n in self.nodes if n.address == address)
        raise LookupError(f"no node serves {key!r}")

    def _ok(self) -> bool:
        for node in self.nodes:
            if not node.running:
                continue
            with sync_client(node.host, node.port, self.tls) as client:
                if client.execute_command("CLUSTER", "INFO").find("cluster_state:ok") < 0:
                    return False
        return True

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    group = SentinelGroup(replicas=2)
    try:
        group.start()
        yield group
    finally:
        group.cleanup()
