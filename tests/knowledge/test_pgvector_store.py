"""What only the pgvector store does: a filtered query through the HNSW index, or through the RUM index's
keyword ranking, still returns k rows; without the RUM extension the keyword ranking is GIN's.

The planner takes the indexes for large tables; here the database's defaults (no sequential scan, bitmap
scan or sort) make it take them for a small one."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import psycopg

from agent_pod.knowledge.pgvector_store import PgvectorStore, vector_literal
from agent_pod.knowledge.serve import store_opener
from agent_pod.knowledge.spec import StoreSpec

from .docs import DIM, document, near, unit

KEYWORD_QUERY = (  # the store's ranking query (pg_keyword.py) on RUM, with a partition filter
    "SELECT c.id FROM kb_chunks c WHERE c.tsv @@ to_tsquery('english', 'tariff') AND c.partition = ANY(%s) "
    "ORDER BY c.tsv <=> to_tsquery('english', 'tariff') LIMIT 5"
)
QUERY = (
    "SELECT v.chunk FROM kb_vectors v WHERE v.model = 'm1' AND v.partition = ANY(%s) "
    f"ORDER BY v.embedding::vector({DIM}) <#> %s::vector({DIM}) LIMIT 10"
)


def database_name(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def prefer_indexes(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        database = database_name(conn)
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f"ALTER DATABASE {database} SET {setting} = off")


def keyword_indexes(dsn: str, prefix: str = "kb") -> set[str]:
    table = f"{prefix}_chunks"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
        return {str(name) for (name,) in rows} - {f"{table}_doc", f"{table}_pkey", f"{table}_chunk_id_key"}


def test_a_filtered_hnsw_scan_returns_k_where_a_plain_scan_returns_fewer(postgres_dsn: str) -> None:
    prefer_indexes(postgres_dsn)
    store = PgvectorStore(postgres_dsn)
    rng = np.random.default_rng(1)
    query = unit(rng, 1)[0]
    for d in range(4):  # 1000 chunks around the query; 10% of the rows, far from it, in partition "mid"
        doc, chunks = document(f"big{d}", [f"big {d} {i}" for i in range(225)], partition="big")
        store.upsert(doc, chunks, "m1", near(query, rng, 225, spread=0.05))
        doc, chunks = document(f"mid{d}", [f"mid {d} {i}" for i in range(25)], partition="mid")
        store.upsert(doc, chunks, "m1", near(-query, rng, 25, spread=0.5))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + QUERY, (["mid", ""], vector_literal(query))))
        assert "Index Scan using kb_hnsw_" in plan
        plain = conn.execute(QUERY, (["mid", ""], vector_literal(query))).fetchall()
    assert len(plain) < 10  # without iterative scans: the 40 rows the index visits are all "big"

    hits = store.search("x", query, k=10, partitions=["mid"], mode="vector", candidates=10, rrf_k=60, now=0)
    assert len(hits) == 10 and {h.partition for h in hits} == {"mid"}
    store.close()


def test_a_filtered_keyword_ranking_reads_k_rows_in_order_from_the_rum_index(postgres_dsn: str) -> None:
    prefer_indexes(postgres_dsn)
    store = PgvectorStore(postgres_dsn)
    assert store.keyword_index == "rum", "postgresql-15-rum is not installed (hack/bootstrap.sh)"
    assert keyword_indexes(postgres_dsn) == {"kb_chunks_rum"}
    rng = np.random.default_rng(3)
    for d in range(4):  # 400 chunks ranked above the others (the word three times in short text): "big"
        doc, chunks = document(
            f"big{d}", [f"tariff tariff tariff {d} {i}" for i in range(100)], partition="big"
        )
        store.upsert(doc, chunks, "m1", unit(rng, 100))
    long = [f"the {i} tariff is listed in a long paragraph of other words and more words" for i in range(6)]
    doc, chunks = document("small", long, partition="small")
    store.upsert(doc, chunks, "m1", unit(rng, 6))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + KEYWORD_QUERY, (["small", ""],)))
    assert "Index Scan using kb_chunks_rum" in plan and "Order By" in plan  # no sort of every match

    hits = store.search(
        "tariff", None, k=5, partitions=["small"], mode="keyword", candidates=5, rrf_k=60, now=0
    )
    assert len(hits) == 5 and {h.doc_id for h in hits} == {"small"}
    everywhere = store.search(
        "tariff", None, k=5, partitions=None, mode="keyword", candidates=5, rrf_k=60, now=0
    )
    assert {h.doc_id for h in everywhere} <= {f"big{d}" for d in range(4)}
    store.close()


def test_a_role_that_may_not_create_rum_ranks_keywords_on_gin(postgres_dsn: str) -> None:
    role = f"kb_{uuid.uuid4().hex[:8]}"  # roles are the whole server's
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"ALTER DATABASE {database_name(conn)} OWNER TO {role}")  # owns its public schema
    dsn = postgres_dsn.replace("user=postgres", f"user={role}")

    store = PgvectorStore(dsn)  # rum is not a trusted extension: only a superuser creates it
    assert store.keyword_index == "gin" and keyword_indexes(dsn) == {"kb_chunks_tsv"}
    doc, chunks = document("faq", ["The zebra tariff is cheap.", "Parking is free."])
    store.upsert(doc, chunks, "m1", unit(np.random.default_rng(1), 2))
    hits = store.search("zebra", None, k=5, partitions=None, mode="keyword", candidates=5, rrf_k=60, now=0)
    assert [h.chunk_id for h in hits] == ["faq#0"]
    store.close()


def test_switching_the_keyword_index_keeps_one_and_the_same_hits(postgres_dsn: str) -> None:
    def keyword_hits(store: PgvectorStore) -> list[str]:
        hits = store.search(
            "zebra tariff", None, k=5, partitions=None, mode="keyword", candidates=5, rrf_k=60, now=0
        )
        return [h.chunk_id for h in hits]

    store = PgvectorStore(postgres_dsn, keyword_index="gin")
    texts = ["The zebra tariff: zebra rates.", "Parking is free.", "A tariff for calls."]
    doc, chunks = document("faq", texts)
    store.upsert(doc, chunks, "m1", unit(np.random.default_rng(1), 3))
    assert keyword_indexes(postgres_dsn) == {"kb_chunks_tsv"}
    on_gin = keyword_hits(store)
    store.close()

    store = PgvectorStore(postgres_dsn)
    assert store.keyword_index == "rum" and keyword_indexes(postgres_dsn) == {"kb_chunks_rum"}
    assert keyword_hits(store) == on_gin == ["faq#0", "faq#2"]
    store.close()


def test_a_base_can_keep_its_keywords_on_gin(postgres_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "dsn").write_text(postgres_dsn)
    pgvector = {"dsnSecretRef": {"name": "pg", "key": "dsn"}, "keywordIndex": "gin"}
    spec = StoreSpec.model_validate({"type": "pgvector", "pgvector": pgvector})
    store = store_opener(spec, "prices", tmp_path / "store", tmp_path)
    try:
        assert isinstance(store, PgvectorStore) and store.keyword_index == "gin"
        assert keyword_indexes(postgres_dsn, "kb_prices") == {"kb_prices_chunks_tsv"}
    finally:
        store.close()
