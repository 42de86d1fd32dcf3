"""The knowledge store on PostgreSQL + pgvector (0.8): for bases that outgrow one file or serve from several
replicas. Documents, chunks (with a generated tsvector under a RUM or GIN index for keyword ranking:
pg_keyword.py) and the vectors of each embedding model, the active model's under a partial HNSW index
(inner product on unit vectors).

A search is one read-only REPEATABLE READ transaction (generation, both rankings, final rows: one
snapshot), so a chunk tombstoned or withheld a moment ago is never returned. Filtered vector queries use
pgvector's iterative index scans, so a filter applied by the scan still yields k rows when k exist.
Writes lock the generation row: concurrent writers (one per replica at most) serialise on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql

from .chunking import embedding_text
from .fusion import reciprocal_rank_fusion
from .models import Chunk, Document, Hit
from .pg_keyword import INDEX_DDL, OTHER_INDEX, KeywordIndexSetting, choose, ranking_query
from .query_terms import tsquery
from .store import DOCUMENT_COLUMNS, HIT_FIELDS, Compaction, SourceCounts, document_row

log = logging.getLogger(__name__)

TEXT_CONFIG = "english"  # stemming like the SQLite store's porter tokenizer
SCHEMA = """
CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO {meta} VALUES ('generation', '0') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {documents} (
    doc_id text PRIMARY KEY, source text NOT NULL, partition text NOT NULL, uri text NOT NULL,
    title text NOT NULL, content_hash text NOT NULL, fetched_at double precision NOT NULL,
    vouched_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {chunks} (
    id bigserial PRIMARY KEY, chunk_id text NOT NULL UNIQUE,
    doc_id text NOT NULL REFERENCES {documents} ON DELETE CASCADE,
    source text NOT NULL, partition text NOT NULL, ordinal integer NOT NULL, text text NOT NULL,
    start integer NOT NULL, "end" integer NOT NULL, heading text NOT NULL DEFAULT '',
    tsv tsvector GENERATED ALWAYS AS (to_tsvector({config}, text)) STORED
);
CREATE INDEX IF NOT EXISTS {chunks_doc} ON {chunks} (doc_id);
-- partition and source copied from the chunk: the HNSW scan filters on them without a join
CREATE TABLE IF NOT EXISTS {vectors} (
    chunk bigint NOT NULL REFERENCES {chunks} ON DELETE CASCADE, model text NOT NULL,
    partition text NOT NULL, source text NOT NULL, embedding vector NOT NULL, PRIMARY KEY (chunk, model)
);
-- Sources whose documents are withheld once not vouched for within max_age seconds (onStale withhold)
CREATE TABLE IF NOT EXISTS {withhold} (source text PRIMARY KEY, max_age double precision NOT NULL);
CREATE TABLE IF NOT EXISTS {tombstones} (
    id bigserial PRIMARY KEY, doc_id text NOT NULL, source text NOT NULL, at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {tombstones_doc} ON {tombstones} (doc_id);
"""
# After the schema: stores written before documents had vouched_at get it (from fetched_at, their last
# vouch), and lose the source-level expiry the per-document freshness replaces; chunks get their heading
MIGRATIONS = """
ALTER TABLE {documents} ADD COLUMN IF NOT EXISTS vouched_at double precision;
UPDATE {documents} SET vouched_at = fetched_at WHERE vouched_at IS NULL;
ALTER TABLE {documents} ALTER COLUMN vouched_at SET NOT NULL;
CREATE INDEX IF NOT EXISTS {documents_vouched} ON {documents} (source, vouched_at);
DROP INDEX IF EXISTS {documents_source};
DROP TABLE IF EXISTS {sources};
ALTER TABLE {chunks} ADD COLUMN IF NOT EXISTS heading text NOT NULL DEFAULT '';
"""
TABLES = ("meta", "documents", "chunks", "vectors", "withhold", "tombstones")
INDEXES = ("documents_vouched", "chunks_doc", "chunks_tsv", "chunks_rum", "tombstones_doc")
RETIRED = ("sources", "documents_source")  # dropped by MIGRATIONS


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


class PgvectorStore:
    def __init__(
        self, dsn: str, table_prefix: str = "kb", keyword_index: KeywordIndexSetting = "auto"
    ) -> None:
        self.dsn = dsn
        self.prefix = table_prefix
        self.t = {name: sql.Identifier(f"{table_prefix}_{name}") for name in TABLES + INDEXES + RETIRED}
        self._write_lock = threading.Lock()
        self._readers: list[psycopg.Connection[Any]] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._writer = psycopg.connect(dsn, autocommit=True)
        with self._writer.transaction():
            # one replica creates the schema; the others wait for it
            self._writer.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"voicefleet-kb-{self.prefix}",)
            )
            self._writer.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self._writer.execute(sql.SQL(SCHEMA).format(**self.t, config=sql.Literal(TEXT_CONFIG)))
            self._writer.execute(sql.SQL(MIGRATIONS).format(**self.t))
            self.keyword_index = choose(keyword_index, keyword_index == "auto" and self._create_rum())
            self._writer.execute(self._q(INDEX_DDL[self.keyword_index]))
            self._writer.execute(
                self._q("DROP INDEX IF EXISTS {name}", name=self.t[OTHER_INDEX[self.keyword_index]])
            )
        log.info(
            "knowledge store keyword index: %s",
            self.keyword_index,
            extra={"table_prefix": self.prefix, "keyword_index": self.keyword_index},
        )

    def _create_rum(self) -> bool:
        """Whether the RUM extension is (now) in the database; a server without it, or a role that may
        not create it, leaves the schema's transaction usable (a savepoint)."""
        try:
            with self._writer.transaction():
                self._writer.execute("CREATE EXTENSION IF NOT EXISTS rum")
        except (psycopg.errors.UndefinedFile, psycopg.errors.InsufficientPrivilege) as exc:
            log.info(
                "knowledge store: no RUM extension (%s): keyword ranking on GIN", exc.diag.message_primary
            )
            return False
        return True

    def _q(self, text: str, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(text).format(**self.t, **extra)

    def _reader(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._reader()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction that bumps the generation (its row lock serialises writers)."""
        with self._write_lock, self._writer.transaction():
            self._writer.execute(
                self._q("UPDATE {meta} SET value = (value::bigint + 1)::text WHERE key = 'generation'")
            )
            yield self._writer

    def _active_model(self, conn: psycopg.Connection[Any]) -> str | None:
        row = conn.execute(self._q("SELECT value FROM {meta} WHERE key = 'active_model'")).fetchone()
        return None if row is None else str(row[0])

    def _hnsw_name(self, model: str, dim: int) -> str:
        digest = hashlib.sha256(model.encode()).hexdigest()[:10]
        return f"{self.prefix}_hnsw_{digest}_{dim}"

    def _ensure_hnsw(self, conn: psycopg.Connection[Any], model: str, dim: int) -> None:
        """The active model's partial HNSW index (an index needs one vector size: the cast gives it)."""
        conn.execute(
            self._q(
                "CREATE INDEX IF NOT EXISTS {name} ON {vectors} "
                "USING hnsw ((embedding::vector({dim})) vector_ip_ops) WHERE model = {model}",
                name=sql.Identifier(self._hnsw_name(model, dim)),
                dim=sql.Literal(dim),
                model=sql.Literal(model),
            )
        )

    # -- the Store protocol --

    def active_model(self) -> str | None:
        with self._read() as conn:
            return self._active_model(conn)

    def activate_model(self, model: str) -> None:
        with self._write() as conn:
            conn.execute(self._q("DELETE FROM {vectors} WHERE model != %s"), (model,))
            conn.execute(
                self._q(
                    "INSERT INTO {meta} VALUES ('active_model', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = %s"
                ),
                (model, model),
            )
            row = conn.execute(
                self._q("SELECT vector_dims(embedding) FROM {vectors} WHERE model = %s LIMIT 1"), (model,)
            ).fetchone()
            keep = None if row is None else self._hnsw_name(model, int(row[0]))
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
                (f"{self.prefix}_vectors", f"{self.prefix}\\_hnsw\\_%"),
            ).fetchall():
                if name != keep:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            if row is not None:
                self._ensure_hnsw(conn, model, int(row[0]))
        log.info("knowledge store model activated", extra={"model": model})

    def document_hashes(self, source: str) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.execute(
                self._q("SELECT doc_id, content_hash FROM {documents} WHERE source = %s"), (source,)
            ).fetchall()
            return {str(d): str(h) for d, h in rows}

    def upsert(self, doc: Document, chunks: list[Chunk], model: str, vectors: np.ndarray) -> None:
        if vectors.shape[0] != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors")
        with self._write() as conn:
            active = self._active_model(conn)
            if active is None:
                conn.execute(self._q("INSERT INTO {meta} VALUES ('active_model', %s)"), (model,))
            if active in (None, model):
                self._ensure_hnsw(conn, model, int(vectors.shape[1]))
            conn.execute(self._q("DELETE FROM {documents} WHERE doc_id = %s"), (doc.doc_id,))
            row = document_row(doc)
            values = ", ".join(["%s"] * len(row))
            conn.execute(self._q(f"INSERT INTO {{documents}} ({DOCUMENT_COLUMNS}) VALUES ({values})"), row)
            if not chunks:
                return
            ids = conn.execute(
                self._q(
                    "INSERT INTO {chunks} "
                    '(chunk_id, doc_id, source, partition, ordinal, text, start, "end", heading) '
                    "SELECT c, %s, %s, %s, o, t, s, e, h "
                    "FROM unnest(%s::text[], %s::int[], %s::text[], %s::int[], %s::int[], %s::text[]) "
                    "AS u(c, o, t, s, e, h) RETURNING id"
                ),
                (
                    doc.doc_id,
                    doc.source,
                    doc.partition,
                    [c.chunk_id for c in chunks],
                    [c.ordinal for c in chunks],
                    [c.text for c in chunks],
                    [c.start for c in chunks],
                    [c.end for c in chunks],
                    [c.heading for c in chunks],
                ),
            ).fetchall()
            self._insert_vectors(conn, [int(i) for (i,) in ids], model, doc.partition, doc.source, vectors)

    def _insert_vectors(
        self,
        conn: psycopg.Connection[Any],
        ids: list[int],
        model: str,
        partition: str | list[str],
        source: str | list[str],
        vectors: np.ndarray,
    ) -> None:
        partitions = partition if isinstance(partition, list) else [partition] * len(ids)
        sources = source if isinstance(source, list) else [source] * len(ids)
        conn.execute(
            self._q(
                "INSERT INTO {vectors} SELECT i, %s, p, s, v::vector "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS u(i, p, s, v) "
                "ON CONFLICT (chunk, model) DO UPDATE SET embedding = excluded.embedding"
            ),
            (model, ids, partitions, sources, [vector_literal(v) for v in vectors]),
        )

    def tombstone(self, source: str, doc_ids: Iterable[str]) -> int:
        with self._write() as conn:
            gone = conn.execute(
                self._q("DELETE FROM {documents} WHERE source = %s AND doc_id = ANY(%s) RETURNING doc_id"),
                (source, list(doc_ids)),
            ).fetchall()
            conn.execute(
                self._q(
                    "INSERT INTO {tombstones} (doc_id, source, at) SELECT d, %s, %s FROM unnest(%s::text[]) d"
                ),
                (source, time.time(), sorted(str(d) for (d,) in gone)),
            )
        return len(gone)

    def tombstones(self, source: str) -> list[tuple[str, float]]:
        with self._read() as conn:
            rows = conn.execute(
                self._q("SELECT doc_id, at FROM {tombstones} WHERE source = %s ORDER BY id"), (source,)
            ).fetchall()
            return [(str(d), float(a)) for d, a in rows]

    def vouch(self, source: str, doc_ids: Iterable[str], at: float) -> None:
        with self._write() as conn:
            conn.execute(
                self._q("UPDATE {documents} SET vouched_at = %s WHERE source = %s AND doc_id = ANY(%s)"),
                (at, source, list(doc_ids)),
            )

    def set_withhold(self, source: str, max_age: float | None) -> None:
        with self._write() as conn:
            if max_age is None:
                conn.execute(self._q("DELETE FROM {withhold} WHERE source = %s"), (source,))
            else:
                conn.execute(
                    self._q(
                        "INSERT INTO {withhold} VALUES (%s, %s) "
                        "ON CONFLICT (source) DO UPDATE SET max_age = excluded.max_age"
                    ),
                    (source, max_age),
                )

    def unvouched_since(self, source: str, since: float) -> int:
        with self._read() as conn:
            row = conn.execute(
                self._q("SELECT count(*) FROM {documents} WHERE source = %s AND vouched_at < %s"),
                (source, since),
            ).fetchone()
        return int(row[0]) if row else 0

    def chunks_without_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        with self._read() as conn:
            rows = conn.execute(
                self._q(
                    "SELECT c.chunk_id, d.title, c.heading, c.text FROM {chunks} c "
                    "JOIN {documents} d ON d.doc_id = c.doc_id WHERE NOT EXISTS "
                    "(SELECT 1 FROM {vectors} v WHERE v.chunk = c.id AND v.model = %s) ORDER BY c.id LIMIT %s"
                ),
                (model, limit),
            ).fetchall()
            return [(str(c), embedding_text(ti, h, t)) for c, ti, h, t in rows]

    def put_vectors(self, model: str, chunk_ids: list[str], vectors: np.ndarray) -> None:
        if vectors.shape[0] != len(chunk_ids):
            raise ValueError(f"{len(chunk_ids)} chunks but {vectors.shape[0]} vectors")
        with self._write() as conn:
            rows = conn.execute(
                self._q("SELECT chunk_id, id, partition, source FROM {chunks} WHERE chunk_id = ANY(%s)"),
                (chunk_ids,),
            ).fetchall()
            found = {str(r[0]): r[1:] for r in rows}  # a chunk removed since it was listed is skipped
            keep = [i for i, c in enumerate(chunk_ids) if c in found]
            if not keep:
                return
            if self._active_model(conn) == model:
                self._ensure_hnsw(conn, model, int(vectors.shape[1]))
            self._insert_vectors(
                conn,
                [int(found[chunk_ids[i]][0]) for i in keep],
                model,
                [str(found[chunk_ids[i]][1]) for i in keep],
                [str(found[chunk_ids[i]][2]) for i in keep],
                vectors[keep],
            )

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        *,
        k: int,
        partitions: list[str] | None,
        mode: Literal["hybrid", "vector", "keyword"],
        candidates: int,
        rrf_k: int,
        keyword_weight: float = 1.0,
        now: float,
    ) -> list[Hit]:
        allowed = None if partitions is None else sorted({"", *partitions})
        with self._read() as conn:
            # the freshness filter (a lookup per candidate row) only when some document is withheld
            withholding = now if self._any_withheld(conn, now) else None
            by_vector: list[int] = []
            if mode != "keyword" and vector is not None:
                by_vector = self._by_vector(conn, vector, candidates, allowed, withholding)
            by_keyword = (
                self._by_keyword(conn, query, candidates, allowed, withholding) if mode != "vector" else []
            )
            fused = reciprocal_rank_fusion(
                by_vector, by_keyword, rrf_k, limit=k, keyword_weight=keyword_weight
            )
            if not fused:
                return []
            rows = conn.execute(
                self._q(
                    "SELECT c.id, c.doc_id, c.chunk_id, c.source, c.partition, d.uri, d.title, c.heading, "
                    "c.text, d.vouched_at FROM {chunks} c JOIN {documents} d ON d.doc_id = c.doc_id "
                    "WHERE c.id = ANY(%s)"
                ),
                ([f.key for f in fused],),
            ).fetchall()
        by_id = {int(r[0]): dict(zip(HIT_FIELDS, r[1:], strict=True)) for r in rows}
        return [
            Hit(**by_id[f.key], score=f.score, vector_rank=f.vector_rank, keyword_rank=f.keyword_rank)
            for f in fused
            if f.key in by_id
        ]

    def _any_withheld(self, conn: psycopg.Connection[Any], now: float) -> bool:
        """Whether some document is past its source's withhold max age (an index range per source)."""
        row = conn.execute(
            self._q(
                "SELECT EXISTS (SELECT 1 FROM {withhold} w JOIN {documents} d "
                "ON d.source = w.source AND d.vouched_at < %s - w.max_age)"
            ),
            (now,),
        ).fetchone()
        return bool(row and row[0])

    def _filters(
        self, alias: str, key: str, allowed: list[str] | None, withholding: float | None
    ) -> tuple[sql.Composable, list[Any]]:
        """Conditions on a table with partition and chunk id (``key``) columns: an allowed partition; with
        ``withholding`` (the search's now, when some document is withheld), a document vouched for within
        its source's max age (freshness.fresh_since, in SQL)."""
        a, k = sql.Identifier(alias), sql.Identifier(key)
        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if withholding is not None:
            parts.append(
                self._q(
                    "NOT EXISTS (SELECT 1 FROM {chunks} x JOIN {documents} d ON d.doc_id = x.doc_id "
                    "JOIN {withhold} w ON w.source = d.source WHERE x.id = {a}.{k} "
                    "AND d.vouched_at < %s - w.max_age)",
                    a=a,
                    k=k,
                )
            )
            params.append(withholding)
        if allowed is not None:
            parts.append(sql.SQL("{a}.partition = ANY(%s)").format(a=a))
            params.append(allowed)
        return sql.SQL(" AND ").join(parts), params

    def _by_vector(
        self,
        conn: psycopg.Connection[Any],
        vector: np.ndarray,
        limit: int,
        allowed: list[str] | None,
        withholding: float | None,
    ) -> list[int]:
        model = self._active_model(conn)
        if model is None:
            return []
        dim = len(vector)
        # iterative scans: the HNSW scan goes on past rows the filter drops until it has enough
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # a candidate list twice the rows wanted: at ef_search = limit the graph walk misses some of them
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(100, 2 * limit))))
        where, params = self._filters("v", "chunk", allowed, withholding)
        rows = conn.execute(
            self._q(
                "WITH nearest AS MATERIALIZED ("
                "SELECT v.chunk, v.embedding::vector({dim}) <#> %s::vector({dim}) AS distance "
                "FROM {vectors} v WHERE v.model = {model} AND {where} ORDER BY distance LIMIT %s"
                ") SELECT chunk FROM nearest ORDER BY distance",  # relaxed order: sorted again
                dim=sql.Literal(dim),
                model=sql.Literal(model),
                where=where,
            ),
            (vector_literal(vector), *params, limit),
        ).fetchall()
        return [int(i) for (i,) in rows]

    def _by_keyword(
        self,
        conn: psycopg.Connection[Any],
        query: str,
        limit: int,
        allowed: list[str] | None,
        withholding: float | None,
    ) -> list[int]:
        words = tsquery(query)
        if not words:
            return []
        where, params = self._filters("c", "id", allowed, withholding)
        ranking = ranking_query(self.keyword_index).format(
            **self.t, config=sql.Literal(TEXT_CONFIG), where=where
        )
        rows = conn.execute(ranking, (words, *params, words, limit)).fetchall()
        return [int(i) for (i,) in rows]

    def counts(self) -> dict[str, SourceCounts]:
        with self._read() as conn:
            docs = conn.execute(
                self._q("SELECT source, count(*) FROM {documents} GROUP BY source")
            ).fetchall()
            chunks = dict(
                conn.execute(self._q("SELECT source, count(*) FROM {chunks} GROUP BY source")).fetchall()
            )
        return {str(s): SourceCounts(documents=n, chunks=chunks.get(s, 0)) for s, n in docs}

    def index_bytes(self) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relkind = 'r' AND c.relname = ANY(%s)",
                ([f"{self.prefix}_{t}" for t in TABLES],),
            ).fetchone()
        return int(row[0]) if row else 0

    def generation(self) -> int:
        with self._read() as conn:
            row = conn.execute(self._q("SELECT value FROM {meta} WHERE key = 'generation'")).fetchone()
        return int(row[0]) if row else 0

    def dead_ratio(self) -> float:
        """Share of the tables' rows that are dead (what VACUUM makes reusable), from the statistics."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup + n_dead_tup), 0) "
                "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                ([f"{self.prefix}_{t}" for t in TABLES],),
            ).fetchone()
        dead, total = (int(row[0]), int(row[1])) if row else (0, 0)
        return dead / total if total else 0.0

    def compact(self, min_free_ratio: float) -> Compaction:
        started = time.monotonic()
        before = self.index_bytes()
        if min_free_ratio > 0 and self.dead_ratio() < min_free_ratio:
            return Compaction(bytes_before=before, bytes_after=before, seconds=0.0, skipped=True)
        with self._write_lock:
            for table in TABLES:  # plain VACUUM: space reused (and the tail given back) without locking reads
                self._writer.execute(sql.SQL("VACUUM (ANALYZE) {}").format(self.t[table]))
        result = Compaction(
            bytes_before=before, bytes_after=self.index_bytes(), seconds=time.monotonic() - started
        )
        log.info("knowledge store compacted", extra=result.model_dump())
        return result

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
