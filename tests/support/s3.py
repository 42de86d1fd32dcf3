"""A real S3-compatible server (SeaweedFS's ``weed server -s3``, built by hack/s3-server.sh) on loopback.

``S3Server`` can stop and restart on the same ports with its data kept (upload retry tests). The
``s3_server`` fixture is one server per test module, with a fresh bucket per test (``s3_bucket``).
"""

from __future__ import annotations

import json
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

from .net import free_port
from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "voicefleet-test"
SECRET_KEY = "voicefleet-test-secret"


def weed_binary() -> str:
    """The cached binary (built on first use: minutes, once per machine)."""
    out = subprocess.run([str(ROOT / "hack/s3-server.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class S3Server:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        # master, volume, filer and S3 each listen on an HTTP and a gRPC port.
        self.ports = {name: free_port(host) for name in ("master", "volume", "filer", "s3")}
        self.grpc = {name: free_port(host) for name in ("master", "volume", "filer", "s3")}
        self.dir = Path(tempfile.mkdtemp(prefix="vf-s3-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = weed_binary()
        (self.dir / "data").mkdir()
        identities = {
            "identities": [
                {
                    "name": "test",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(identities))

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def client(self) -> Minio:
        return Minio(f"{self.host}:{self.ports['s3']}", ACCESS_KEY, SECRET_KEY, secure=False)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        p, g = self.ports, self.grpc
        log = open(self.dir / "weed.log", "ab")  # noqa: SIM115 - the server's, closed with it
        self.process = subprocess.Popen(
            [
                self.binary,
                "server",
                f"-dir={self.dir / 'data'}",
                f"-ip={self.host}",
                f"-ip.bind={self.host}",
                f"-master.port={p['master']}",
                f"-master.port.grpc={g['master']}",
                f"-volume.port={p['volume']}",
                f"-volume.port.grpc={g['volume']}",
                f"-filer.port={p['filer']}",
                f"-filer.port.grpc={g['filer']}",
                "-s3",
                f"-s3.port={p['s3']}",
                f"-s3.port.grpc={g['s3']}",
                f"-s3.config={self.dir / 's3.json'}",
                "-volume.max=4",
                "-master.volumeSizeLimitMB=64",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        process = self.process
        wait_for(lambda: self.answers() or process.poll() is not None, timeout=60, what="weed S3 gateway")
        if process.poll() is not None:
            raise RuntimeError(f"weed exited: {(self.dir / 'weed.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_bucket(self) -> str:
        name = f"rec-{uuid.uuid4().hex[:12]}"
        client = self.client()
        # The gateway answers health checks before the filer has its volumes: retry until it takes it.
        wait_for(lambda: client.make_bucket(name) or True, timeout=30, what=f"bucket {name}")
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
