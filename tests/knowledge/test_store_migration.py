"""Stores written before per-document freshness open with it: each document counts as vouched for at its
fetch (its last vouch then), and the source-level expiry table is gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlean as sqlite3

from agent_pod.knowledge.sqlite_store import SqliteStore
from agent_pod.knowledge.store import Store

from .docs import document, unit

NOW = 1_000_000.0

# The tables as the previous release created them (without vouched_at, with sources.expires_at)
OLD_TABLES = """
CREATE TABLE {p}documents (
    doc_id text PRIMARY KEY, source text NOT NULL, partition text NOT NULL, uri text NOT NULL,
    title text NOT NULL, content_hash text NOT NULL, fetched_at double precision NOT NULL
);
CREATE INDEX {p}documents_source ON {p}documents (source);
CREATE TABLE {p}sources (source text PRIMARY KEY, expires_at double precision);
INSERT INTO {p}documents VALUES ('old', 'docs', '', 'file:///old', 'Old', 'h', {old});
INSERT INTO {p}documents VALUES ('recent', 'docs', '', 'file:///recent', 'Recent', 'h2', {recent});
INSERT INTO {p}sources VALUES ('docs', {expires});
"""


def old_tables(prefix: str) -> str:
    return OLD_TABLES.format(p=prefix, old=NOW - 100, recent=NOW - 10, expires=NOW + 1000)


def check_migrated(store: Store) -> None:
    assert store.unvouched_since("docs", NOW - 50) == 1 and store.unvouched_since("docs", NOW - 200) == 0
    store.set_withhold("docs", 50)
    doc, chunks = document("new", ["a new document"], fetched_at=NOW)
    store.upsert(doc, chunks, "m1", unit(np.random.default_rng(1), 1))
    hits = store.search(
        "new document", None, k=5, partitions=None, mode="keyword", candidates=50, rrf_k=60, now=NOW
    )
    assert [h.doc_id for h in hits] == ["new"]
    assert store.unvouched_since("docs", NOW - 50) == 1


def test_an_old_sqlite_store_migrates(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    conn = sqlite3.connect(str(path))
    conn.executescript(old_tables(""))
    conn.close()
    store = SqliteStore(path)
    try:
        check_migrated(store)
    finally:
        store.close()
    conn = sqlite3.connect(str(path))
    names = {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master").fetchall()}
    conn.close()
    assert "sources" not in names and "documents_source" not in names and "documents_vouched" in names
    SqliteStore(path).close()  # and opens again, migrated


def test_an_old_pgvector_store_migrates(postgres_dsn: str) -> None:
    import psycopg  # only where pgvector runs

    from agent_pod.knowledge.pgvector_store import PgvectorStore

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(old_tables("kb_"))
    store = PgvectorStore(postgres_dsn)
    try:
        check_migrated(store)
    finally:
        store.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        names = {str(n) for (n,) in conn.execute("SELECT relname FROM pg_class").fetchall()}
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'kb_documents' AND column_name = 'vouched_at'"
        ).fetchone()
    assert "kb_sources" not in names and "kb_documents_source" not in names
    assert "kb_documents_vouched" in names and nullable == ("NO",)
    PgvectorStore(postgres_dsn).close()
