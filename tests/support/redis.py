"""A real redis-server on a free loopback port, started by the tests.

``RedisServer`` can stop and restart on the same port (outage tests). Fixtures:
``redis_server`` is shared by the session (tests isolate themselves with their
own agent names); ``private_redis`` is a server of one test's own, to stop and
restart at will.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.processes import stop_process

from .net import free_port
from .tls import TLSFiles
from .wait import wait_for


def _answers_ping(host: str, port: int, tls: TLSFiles | None = None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as raw:
            s = raw
            if tls is not None:
                context = ssl.create_default_context(cafile=str(tls.ca))
                context.load_cert_chain(tls.client_cert, tls.client_key)  # in case clients must show one
                s = context.wrap_socket(raw, server_hostname=host)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, password or not
    except (OSError, ssl.SSLError):
        return False


class RedisServer:
    """``extra``: more redis-server options (replication, cluster mode); ``tls``: serve TLS only, with
    this certificate (clients are not asked for one)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra: Sequence[str] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.dir = Path(tempfile.mkdtemp(prefix="vf-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.extra = list(extra)
        self.tls = tls

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.cert),
            "--tls-key-file",
            str(self.tls.key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]

    def answers(self) -> bool:
        return _answers_ping(self.host, self.port, self.tls)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        # No persistence: a restart comes back empty, the worst case the pods must re-sync from.
        self.process = subprocess.Popen(
            [
                binary,
                *self._listen_args(),
                "--bind",
                self.host,
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self.process
        wait_for(
            lambda: self.answers() or process.poll() is not None,
            timeout=15,
            what=f"redis-server on {self.host}:{self.port}",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.process, grace=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()
