"""A real S3-compatible server (versitygw with its posix backend, built by hack/s3-server.sh) on loopback.

``S3Server`` can stop and restart on the same port with its data kept (upload retry tests). The
``s3_server`` fixture is one server per test module, with a fresh bucket per test (``s3_bucket``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from tests.support.processes import stop_process

from .net import free_port
from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "voicefleet-test"
SECRET_KEY = "voicefleet-test-secret"


def server_binary() -> str:
    """The cached binary (built on first use, once per machine)."""
    out = subprocess.run([str(ROOT / "hack/s3-server.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class S3Server:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.dir = Path(tempfile.mkdtemp(prefix="vf-s3-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = server_binary()
        (self.dir / "data").mkdir()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Minio:
        return Minio(f"{self.host}:{self.port}", ACCESS_KEY, SECRET_KEY, secure=False)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's, closed with it
        self.process = subprocess.Popen(
            [
                self.binary,
                "--access",
                ACCESS_KEY,
                "--secret",
                SECRET_KEY,
                "--port",
                f"{self.host}:{self.port}",
                "--health",
                "/healthz",
                "posix",
                str(self.dir / "data"),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        process = self.process
        wait_for(lambda: self.answers() or process.poll() is not None, timeout=30, what="S3 server")
        if process.poll() is not None:
            raise RuntimeError(f"S3 server exited: {(self.dir / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process, grace=15)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_bucket(self) -> str:
        name = f"rec-{uuid.uuid4().hex[:12]}"
        self.client().make_bucket(name)
        return name


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()
