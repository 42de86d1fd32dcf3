"""What only the pgvector store does: a filtered query through the HNSW index still returns k rows.

The planner takes the HNSW index for large tables; here the database's defaults (no sequential scan, bitmap
scan or sort) make it take it for a small one."""

from __future__ import annotations

import numpy as np
import psycopg

from agent_pod.knowledge.pgvector_store import PgvectorStore, vector_literal

from .docs import DIM, document, near, unit

QUERY = (
    "SELECT v.chunk FROM kb_vectors v WHERE v.model = 'm1' AND v.partition = ANY(%s) "
    f"ORDER BY v.embedding::vector({DIM}) <#> %s::vector({DIM}) LIMIT 10"
)


def test_a_filtered_hnsw_scan_returns_k_where_a_plain_scan_returns_fewer(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()
        assert database is not None
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f"ALTER DATABASE {database[0]} SET {setting} = off")
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
