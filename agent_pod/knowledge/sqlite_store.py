"""The embedded knowledge store: one SQLite file (WAL) holding documents, chunks, an FTS5 keyword index and
the vectors of each embedding model; the active model's vectors are searched in memory (vector_index.py).

One writer thread and any number of reader threads: writes serialise on a lock and one connection, each
reader thread has its own connection, and a search reads everything (generation, freshness, keyword
ranking, final rows) in one read transaction, so a chunk tombstoned or expired a moment ago is never
returned.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlean as sqlite3

from .chunking import embedding_text
from .freshness import fresh_since, past
from .fusion import reciprocal_rank_fusion
from .models import Chunk, Document, Hit
from .query_terms import fts5_match
from .store import DOCUMENT_COLUMNS, HIT_FIELDS, Compaction, SourceCounts, document_row
from .vector_index import VectorIndex

log = logging.getLogger(__name__)

_SCANS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-vector-scan")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, partition TEXT NOT NULL, uri TEXT NOT NULL,
    title TEXT NOT NULL, content_hash TEXT NOT NULL, fetched_at REAL NOT NULL, vouched_at REAL NOT NULL
);
-- AUTOINCREMENT: a deleted chunk's id is never reused, so a stale in-memory vector row cannot name another
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    source TEXT NOT NULL, partition TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, heading TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    DELETE FROM vectors WHERE chunk = old.id;
END;
-- A rowid table: WITHOUT ROWID would keep these 1 KB rows in its index pages at 4.7 KB each
CREATE TABLE IF NOT EXISTS vectors (
    chunk INTEGER NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (chunk, model)
);
-- Sources whose documents are withheld once not vouched for within max_age seconds (onStale withhold)
CREATE TABLE IF NOT EXISTS withhold (source TEXT PRIMARY KEY, max_age REAL NOT NULL);
-- Every removal from a source is kept: which document, and when (audit)
CREATE TABLE IF NOT EXISTS tombstones (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, source TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_doc ON tombstones (doc_id);
"""


# After the schema: stores written before documents had vouched_at get it (from fetched_at, their last
# vouch), and lose the source-level expiry the per-document freshness replaces
MIGRATIONS = """
CREATE INDEX IF NOT EXISTS documents_vouched ON documents (source, vouched_at);
DROP INDEX IF EXISTS documents_source;
DROP TABLE IF EXISTS sources;
"""

KEYWORD_POOL = 4  # keyword candidates ranked before the filters, per one wanted
WITHHELD_KEYS = 2000  # chunks of documents withheld one by one, masked by id up to this many


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.executescript(SCHEMA)
        _migrate(self._writer)
        self._index: VectorIndex | None = None

    def _connect(self) -> Any:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, consistent always
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[Any]:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[_Write]:
        """One write transaction that bumps the generation. After the commit, still under the write lock (so
        a search never takes the index for one a foreign writer left behind), the write's changes go to
        the in-memory index, if it was current before the write; a stale one is rebuilt by the next search."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                write = _Write(conn, _generation(conn))
                yield write
                conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(write.before + 1),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            index = self._index
            if index is not None and index.generation == write.before:
                for change in write.index_changes:
                    change(index)
                index.set_generation(write.before + 1)

    # -- the Store protocol --

    def active_model(self) -> str | None:
        with self._read() as conn:
            return _active_model(conn)

    def activate_model(self, model: str) -> None:
        with self._write() as write:
            write.conn.execute("DELETE FROM vectors WHERE model != ?", (model,))
            write.conn.execute("INSERT OR REPLACE INTO meta VALUES ('active_model', ?)", (model,))
            self._index = None  # rebuilt from the new model's vectors by the next search
        log.info("knowledge store model activated", extra={"model": model})

    def document_hashes(self, source: str) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.execute("SELECT doc_id, content_hash FROM documents WHERE source = ?", (source,))
            return dict(rows.fetchall())

    def upsert(self, doc: Document, chunks: list[Chunk], model: str, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors")
        with self._write() as write:
            conn = write.conn
            active = _active_model(conn)
            if active is None:
                conn.execute("INSERT INTO meta VALUES ('active_model', ?)", (model,))
                active = model
            removed = _delete_document(conn, doc.doc_id)
            row = document_row(doc)
            values = _placeholders(len(row))
            conn.execute(f"INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES ({values})", row)
            ids = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                cursor = conn.execute(
                    "INSERT INTO chunks "
                    '(chunk_id, doc_id, source, partition, ordinal, text, start, "end", heading) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _chunk_row(doc, chunk),
                )
                ids.append(int(cursor.lastrowid))
                conn.execute("INSERT INTO vectors VALUES (?, ?, ?)", (ids[-1], model, vector.tobytes()))
            write.index_changes.append(lambda index: index.remove(removed))
            if model == active:
                write.index_changes.append(
                    lambda index: index.add(ids, doc.partition, doc.source, vectors, doc.fetched_at)
                )

    def tombstone(self, source: str, doc_ids: Iterable[str]) -> int:
        now = time.time()
        removed: list[int] = []
        count = 0
        with self._write() as write:
            conn = write.conn
            for doc_id in doc_ids:
                row = conn.execute(
                    "SELECT 1 FROM documents WHERE doc_id = ? AND source = ?", (doc_id, source)
                ).fetchone()
                if row is None:
                    continue
                removed += _delete_document(conn, doc_id)
                conn.execute(
                    "INSERT INTO tombstones (doc_id, source, at) VALUES (?, ?, ?)", (doc_id, source, now)
                )
                count += 1
            write.index_changes.append(lambda index: index.remove(removed))
        return count

    def tombstones(self, source: str) -> list[tuple[str, float]]:
        """(doc_id, when) of every removal from the source, oldest first (the audit trail)."""
        with self._read() as conn:
            rows = conn.execute("SELECT doc_id, at FROM tombstones WHERE source = ? ORDER BY id", (source,))
            return [(str(d), float(a)) for d, a in rows.fetchall()]

    def vouch(self, source: str, doc_ids: Iterable[str], at: float) -> None:
        ids = json.dumps(list(doc_ids))
        with self._write() as write:
            write.conn.execute(
                "UPDATE documents SET vouched_at = ? "
                "WHERE source = ? AND doc_id IN (SELECT value FROM json_each(?))",
                (at, source, ids),
            )
            keys = [
                int(k)
                for (k,) in write.conn.execute(
                    "SELECT id FROM chunks WHERE source = ? AND doc_id IN (SELECT value FROM json_each(?))",
                    (source, ids),
                ).fetchall()
            ]
            write.index_changes.append(lambda index: index.vouch(keys, at))

    def set_withhold(self, source: str, max_age: float | None) -> None:
        with self._write() as write:  # read per search, not kept in the index
            if max_age is None:
                write.conn.execute("DELETE FROM withhold WHERE source = ?", (source,))
            else:
                write.conn.execute("INSERT OR REPLACE INTO withhold VALUES (?, ?)", (source, max_age))

    def unvouched_since(self, source: str, since: float) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) FROM documents WHERE source = ? AND vouched_at < ?", (source, since)
            ).fetchone()
            return int(row[0])

    def chunks_without_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT c.chunk_id, d.title, c.heading, c.text FROM chunks c "
                "JOIN documents d ON d.doc_id = c.doc_id WHERE NOT EXISTS "
                "(SELECT 1 FROM vectors v WHERE v.chunk = c.id AND v.model = ?) ORDER BY c.id LIMIT ?",
                (model, limit),
            )
            return [(str(c), embedding_text(ti, h, t)) for c, ti, h, t in rows.fetchall()]

    def put_vectors(self, model: str, chunk_ids: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(chunk_ids):
            raise ValueError(f"{len(chunk_ids)} chunks but {vectors.shape[0]} vectors")
        added: list[tuple[int, str, str, float, np.ndarray]] = []
        with self._write() as write:
            conn = write.conn
            active = _active_model(conn)
            for chunk_id, vector in zip(chunk_ids, vectors, strict=True):
                row = conn.execute(
                    "SELECT c.id, c.partition, c.source, d.vouched_at FROM chunks c "
                    "JOIN documents d ON d.doc_id = c.doc_id WHERE c.chunk_id = ?",
                    (chunk_id,),
                ).fetchone()
                if row is None:  # removed since it was listed
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", (row[0], model, vector.tobytes())
                )
                added.append((int(row[0]), str(row[1]), str(row[2]), float(row[3]), vector))

            def add_rows(index: VectorIndex) -> None:
                for key, partition, source, vouched_at, row_vector in added:
                    index.add([key], partition, source, row_vector[None, :], vouched_at)

            if model == active:
                write.index_changes.append(add_rows)

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
            generation = _generation(conn)
            fresh = {
                str(source): fresh_since(max_age, now)
                for source, max_age in conn.execute("SELECT source, max_age FROM withhold").fetchall()
            }
            withheld = _withheld(conn, fresh, now)
            scan: Future[list[int]] | None = None
            if mode != "keyword" and vector is not None:
                index = self._current_index(conn, generation)
                if index is not None:
                    # The vector scan (numpy) and the keyword ranking (SQLite) both release the GIL: the
                    # scan runs beside the query instead of after it.
                    scan = _SCANS.submit(
                        index.snapshot().search,
                        vector,
                        candidates,
                        None if allowed is None else set(allowed),
                        fresh,
                    )
            by_keyword = _keyword(conn, query, candidates, allowed, withheld) if mode != "vector" else []
            by_vector = scan.result() if scan is not None else []
            fused = reciprocal_rank_fusion(
                by_vector,
                by_keyword,
                rrf_k,
                limit=len(by_vector) + len(by_keyword),
                keyword_weight=keyword_weight,
            )
            hits: list[Hit] = []
            # The final rows, filtered again in this read (the index may run a moment ahead or behind): the
            # best 2k, and more only when some of them are gone
            for start in range(0, len(fused), 2 * k):
                batch = fused[start : start + 2 * k]
                rows = _live_rows(conn, [f.key for f in batch], allowed, withheld)
                for f in batch:
                    if f.key in rows and len(hits) < k:
                        hit = Hit(
                            **rows[f.key],
                            score=f.score,
                            vector_rank=f.vector_rank,
                            keyword_rank=f.keyword_rank,
                        )
                        hits.append(hit)
                if len(hits) == k:
                    break
        return hits

    def _current_index(self, conn: Any, generation: int) -> VectorIndex | None:
        """The in-memory index, (re)built from this read's snapshot when missing or behind a writer that is
        not this process's (whose changes it applies itself right after committing)."""
        model = _active_model(conn)
        index = self._index
        if model is None:
            return None
        current = index is not None and index.model == model
        if index is not None and current and (index.generation >= generation or self._write_lock.locked()):
            return index
        with self._index_lock:
            index = self._index
            if index is not None and index.model == model and index.generation >= generation:
                return index
            self._index = _load_index(conn, model, generation)
            return self._index

    def counts(self) -> dict[str, SourceCounts]:
        with self._read() as conn:
            docs = dict(conn.execute("SELECT source, count(*) FROM documents GROUP BY source").fetchall())
            chunks = dict(conn.execute("SELECT source, count(*) FROM chunks GROUP BY source").fetchall())
        return {s: SourceCounts(documents=n, chunks=chunks.get(s, 0)) for s, n in docs.items()}

    def index_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def generation(self) -> int:
        with self._read() as conn:
            return _generation(conn)

    def free_ratio(self) -> float:
        """Share of the file's pages that are free (what a VACUUM would give back)."""
        with self._read() as conn:
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return free / pages if pages else 0.0

    def compact(self, min_free_ratio: float) -> Compaction:
        started = time.monotonic()
        before = self.index_bytes()
        with self._write_lock:
            conn = self._writer
            conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('optimize')")  # merge FTS segments
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if pages and free / pages < min_free_ratio:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                return Compaction(
                    bytes_before=before, bytes_after=self.index_bytes(), seconds=0.0, skipped=True
                )
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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


@dataclass
class _Write:
    conn: Any
    before: int  # the generation before this write
    index_changes: list[Callable[[VectorIndex], None]] = field(default_factory=list)


def _generation(conn: Any) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


def _active_model(conn: Any) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'active_model'").fetchone()
    return None if row is None else str(row[0])


def _chunk_row(doc: Document, chunk: Chunk) -> tuple[Any, ...]:
    return (
        chunk.chunk_id,
        doc.doc_id,
        doc.source,
        doc.partition,
        chunk.ordinal,
        chunk.text,
        chunk.start,
        chunk.end,
        chunk.heading,
    )


def _delete_document(conn: Any, doc_id: str) -> list[int]:
    """Deletes a document and its chunks (their FTS rows and vectors go with them: triggers); their ids."""
    ids = [int(i) for (i,) in conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall()]
    conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
    return ids


@dataclass(frozen=True)
class _Withheld:
    """What a search withholds: whole sources (every document past its max age, filtered by name), and
    documents one by one where a source has only some past: their chunk ids when few (``keys``), else
    ``now`` for a per-row SQL condition."""

    sources: tuple[str, ...] = ()
    keys: frozenset[int] = frozenset()
    now: float | None = None

    def __bool__(self) -> bool:
        return bool(self.sources or self.keys) or self.now is not None


def _withheld(conn: Any, fresh: dict[str, float], now: float) -> _Withheld:
    """From each withheld source's oldest and newest vouch (two index lookups): the usual case, no
    document past its max age, adds no filter at all."""
    whole: list[str] = []
    keys: set[int] = set()
    many = False
    for source, since in sorted(fresh.items()):
        oldest, newest = conn.execute(
            "SELECT (SELECT min(vouched_at) FROM documents WHERE source = ?), "
            "(SELECT max(vouched_at) FROM documents WHERE source = ?)",
            (source, source),
        ).fetchone()
        extent = past(oldest, newest, since)
        if extent == "all":
            whole.append(source)
        elif extent == "some" and not many:
            rows = conn.execute(
                "SELECT c.id FROM documents d JOIN chunks c ON c.doc_id = d.doc_id "
                "WHERE d.source = ? AND d.vouched_at < ? LIMIT ?",
                (source, since, WITHHELD_KEYS + 1),
            ).fetchall()
            keys.update(int(k) for (k,) in rows)
            many = len(keys) > WITHHELD_KEYS
    if many:
        return _Withheld(tuple(whole), now=now)
    return _Withheld(tuple(whole), frozenset(keys))


def _filters(allowed: list[str] | None, withheld: _Withheld) -> tuple[str, list[Any]]:
    """SQL conditions on chunks ``c``: an allowed partition, not a withheld source, and (when some
    documents are withheld one by one) a document vouched for within its source's max age (fresh_since,
    in SQL)."""
    sql = ""
    params: list[Any] = []
    if allowed is not None:
        sql += f" AND c.partition IN ({_placeholders(len(allowed))})"
        params += allowed
    if withheld.sources:
        sql += f" AND c.source NOT IN ({_placeholders(len(withheld.sources))})"
        params += withheld.sources
    if withheld.keys:
        sql += f" AND c.id NOT IN ({_placeholders(len(withheld.keys))})"
        params += sorted(withheld.keys)
    if withheld.now is not None:
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM documents d JOIN withhold w ON w.source = d.source "
            "WHERE d.doc_id = c.doc_id AND d.vouched_at < ? - w.max_age)"
        )
        params.append(withheld.now)
    return sql, params


def _keyword(conn: Any, query: str, limit: int, allowed: list[str] | None, withheld: _Withheld) -> list[int]:
    """BM25's best ``limit`` chunks that pass the filters. First the best few times ``limit`` of the whole
    index, filtered (BM25 alone is ~2 ms cheaper than ranked through a join at 100k chunks); when too few
    of those pass, the filters go into the ranking query itself, so filtered chunks never crowd out k."""
    match = fts5_match(query)
    if not match:
        return []
    if allowed is None and not withheld.sources and withheld.now is None:
        # at most the few withheld chunks to drop: ranking that many more finds ``limit`` without them
        best = conn.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (match, limit + len(withheld.keys)),
        ).fetchall()
        return [int(i) for (i,) in best if int(i) not in withheld.keys][:limit]
    pool = KEYWORD_POOL * limit
    best = [
        int(i)
        for (i,) in conn.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (match, pool),
        ).fetchall()
    ]
    where, params = _filters(allowed, withheld)
    passing = {
        int(i)
        for (i,) in conn.execute(
            f"SELECT c.id FROM chunks c WHERE c.id IN ({_placeholders(len(best))}){where}", (*best, *params)
        ).fetchall()
    }
    kept = [i for i in best if i in passing]
    if len(kept) >= limit or len(best) < pool:
        return kept[:limit]
    rows = conn.execute(
        "SELECT c.id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
        f"WHERE chunks_fts MATCH ?{where} ORDER BY f.rank LIMIT ?",
        (match, *params, limit),
    )
    return [int(i) for (i,) in rows.fetchall()]


def _live_rows(
    conn: Any, keys: list[int], allowed: list[str] | None, withheld: _Withheld
) -> dict[int, dict[str, Any]]:
    if not keys:
        return {}
    where, params = _filters(allowed, withheld)
    rows = conn.execute(
        "SELECT c.id, c.doc_id, c.chunk_id, c.source, c.partition, d.uri, d.title, c.heading, c.text, "
        "d.vouched_at "
        "FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
        f"WHERE c.id IN ({_placeholders(len(keys))}){where}",
        (*keys, *params),
    )
    return {int(r[0]): dict(zip(HIT_FIELDS, r[1:], strict=True)) for r in rows.fetchall()}


def _migrate(conn: Any) -> None:
    conn.execute("BEGIN IMMEDIATE")  # before looking: another process may be migrating the same file
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(documents)").fetchall()}
    if "vouched_at" not in columns:
        conn.execute("ALTER TABLE documents ADD COLUMN vouched_at REAL NOT NULL DEFAULT 0")
        conn.execute("UPDATE documents SET vouched_at = fetched_at")
    if "heading" not in {str(r[1]) for r in conn.execute("PRAGMA table_info(chunks)").fetchall()}:
        conn.execute("ALTER TABLE chunks ADD COLUMN heading TEXT NOT NULL DEFAULT ''")
    for statement in MIGRATIONS.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("COMMIT")


def _load_index(conn: Any, model: str, generation: int) -> VectorIndex:
    rows = conn.execute(
        "SELECT v.chunk, c.partition, c.source, v.vector, d.vouched_at FROM vectors v "
        "JOIN chunks c ON c.id = v.chunk JOIN documents d ON d.doc_id = c.doc_id "
        "WHERE v.model = ? ORDER BY c.partition, c.source",
        (model,),
    ).fetchall()
    dim = len(rows[0][3]) // 4 if rows else 0
    index = VectorIndex(model, dim)
    start = 0
    for i in range(1, len(rows) + 1):  # one add per (partition, source) run
        if i == len(rows) or rows[i][1:3] != rows[start][1:3]:
            group = rows[start:i]
            vectors = np.frombuffer(b"".join(r[3] for r in group), dtype=np.float32).reshape(len(group), dim)
            vouched = np.array([r[4] for r in group], dtype=np.float64)
            index.add([int(r[0]) for r in group], str(group[0][1]), str(group[0][2]), vectors, vouched)
            start = i
    index.set_generation(generation)
    log.info("knowledge vector index loaded", extra={"model": model, "rows": len(rows)})
    return index
