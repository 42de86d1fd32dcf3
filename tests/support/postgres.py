"""A real PostgreSQL 15 server with pgvector (hack/pgvector.sh) on a free loopback port, started by the tests.

``postgres_server`` is one server per test session (initdb in a temporary directory; run as the
``postgres`` user when the tests run as root, since PostgreSQL refuses root); ``postgres_dsn`` is a fresh
database of one test's own on it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import stop_process

from .net import free_port
from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path("/usr/lib/postgresql/15/bin")


def install_pgvector() -> None:
    """Builds and installs pgvector once per machine (a no-op when installed)."""
    subprocess.run([str(ROOT / "hack/pgvector.sh")], check=True, capture_output=True, text=True)


class PostgresServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.dir = Path(tempfile.mkdtemp(prefix="vf-postgres-"))
        self.data = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        # PostgreSQL will not run as root: then as the postgres user the Debian package creates
        user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.uid: int | None = user.pw_uid if user else None
        self.gid: int | None = user.pw_gid if user else None
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user=postgres dbname={database} connect_timeout=5"

    def answers(self) -> bool:
        import psycopg  # here, not at the top: every test session loads this plugin

        try:
            with psycopg.connect(self.dsn(), connect_timeout=1) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def start(self) -> None:
        if not (BIN / "postgres").exists():
            raise RuntimeError("PostgreSQL 15 is not installed (hack/bootstrap.sh)")
        install_pgvector()
        subprocess.run(
            [str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=self.uid,
            group=self.gid,
        )
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115 - the server's, closed with it
        # fsync off: a test server's data is thrown away; the unix socket in our own dir, not /run
        self.process = subprocess.Popen(
            [
                *(str(BIN / "postgres"), "-D", str(self.data), "-h", self.host, "-p", str(self.port)),
                *("-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off"),
                *("-c", "full_page_writes=off", "-c", "max_connections=200"),
            ],
            stdout=log,
            stderr=log,
            user=self.uid,
            group=self.gid,
        )
        log.close()
        process = self.process
        wait_for(lambda: self.answers() or process.poll() is not None, timeout=60, what="PostgreSQL")
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited: {(self.dir / 'postgres.log').read_text()[-3000:]}")

    def create_database(self) -> str:
        """A fresh database with the vector extension; its DSN."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        return self.dsn(name)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: SIGTERM waits for clients to leave
        stop_process(self.process, grace=15)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()
