"""The knowledge stores under test (every conformance test runs against each of them), and the sources'
servers: a document server and S3 on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_pod.knowledge.sqlite_store import SqliteStore
from agent_pod.knowledge.store import Store
from tests.knowledge.doc_server import DocServer
from tests.support.s3 import s3_bucket, s3_server  # noqa: F401 - fixtures of this directory


# pgvector-gin: the keyword ranking of a PostgreSQL without the RUM extension (pg_keyword.py)
@pytest.fixture(params=["sqlite", "pgvector", "pgvector-gin"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "store" / "index.sqlite")
    else:
        from agent_pod.knowledge.pgvector_store import PgvectorStore  # psycopg: only where pgvector runs

        dsn = request.getfixturevalue("postgres_dsn")
        opened = PgvectorStore(dsn, keyword_index="gin" if request.param == "pgvector-gin" else "auto")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
async def doc_server() -> AsyncIterator[DocServer]:
    server = DocServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
