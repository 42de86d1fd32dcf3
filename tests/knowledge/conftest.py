"""The knowledge stores under test: every conformance test runs against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_pod.knowledge.sqlite_store import SqliteStore
from agent_pod.knowledge.store import Store


@pytest.fixture(params=["sqlite", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "store" / "index.sqlite")
    else:
        from agent_pod.knowledge.pgvector_store import PgvectorStore  # psycopg: only where pgvector runs

        opened = PgvectorStore(request.getfixturevalue("postgres_dsn"))
    try:
        yield opened
    finally:
        opened.close()
