"""The contract of a knowledge store (the embedded SQLite one and PostgreSQL + pgvector).

Every method blocks (disk or network): the knowledge server calls them from worker threads. Writes are
transactional per call, so a failed sync leaves the last good index serving; every committed change bumps
the generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

import numpy as np
from pydantic import Field

from ..config import Model
from .models import Chunk, Document, Hit

# The columns of both stores' documents table, in document_row's order
DOCUMENT_COLUMNS = "doc_id, source, partition, uri, title, content_hash, fetched_at, vouched_at"
# The stored fields of a Hit, in the order the stores select them
HIT_FIELDS = ("doc_id", "chunk_id", "source", "partition", "uri", "title", "heading", "text", "vouched_at")


def document_row(doc: Document) -> tuple[str, str, str, str, str, str, float, float]:
    """A document's row (DOCUMENT_COLUMNS): a document written is vouched for at its fetch."""
    return (doc.doc_id, doc.source, doc.partition, doc.uri, doc.title, doc.content_hash, doc.fetched_at,
            doc.fetched_at)  # fmt: skip


class Compaction(Model):
    """One maintenance run: what it freed and how long it took."""

    bytes_before: int
    bytes_after: int
    seconds: float
    skipped: bool = Field(default=False, description="Too little free space to be worth it.")


class SourceCounts(Model):
    documents: int
    chunks: int


class Store(Protocol):
    def active_model(self) -> str | None:
        """The embedding model whose vectors are searched (None: an empty, new store)."""

    def activate_model(self, model: str) -> None:
        """Search this model's vectors from now on, and drop every other model's (after a re-embed)."""

    def document_hashes(self, source: str) -> dict[str, str]:
        """doc_id -> content_hash of the source's live (not tombstoned) documents."""

    def upsert(self, doc: Document, chunks: list[Chunk], model: str, vectors: np.ndarray) -> None:
        """Insert or replace a document with its chunks and their vectors (rows of ``vectors``, unit norm,
        in ``chunks`` order), atomically; it counts as vouched for at its ``fetched_at``."""

    def tombstone(self, source: str, doc_ids: Iterable[str]) -> int:
        """Remove documents gone from their source, and their chunks, from search at once; how many."""

    def tombstones(self, source: str) -> list[tuple[str, float]]:
        """(doc_id, Unix time) of every removal from the source, oldest first: the audit trail."""

    def vouch(self, source: str, doc_ids: Iterable[str], at: float) -> None:
        """The source vouched for these indexed documents at ``at`` (Unix time): a sync read them unchanged,
        or the source confirmed them unchanged. Unknown ids are ignored."""

    def set_withhold(self, source: str, max_age: float | None) -> None:
        """From now on a document of the source last vouched for before a search's ``now`` minus
        ``max_age`` seconds (freshness.fresh_since) is not served; None: served however old."""

    def unvouched_since(self, source: str, since: float) -> int:
        """How many of the source's live documents were last vouched for before ``since``."""

    def chunks_without_vectors(self, model: str, limit: int) -> list[tuple[str, str]]:
        """(chunk_id, text to embed: chunking.embedding_text) of chunks with no vector of ``model`` yet: a
        re-embed works through them."""

    def put_vectors(self, model: str, chunk_ids: list[str], vectors: np.ndarray) -> None:
        """Store vectors of ``model`` for existing chunks (a re-embed)."""

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
        """The best ``k`` chunks. ``partitions``: those plus the shared one ("") are searched; None: all.
        Filters (partition, tombstones, withheld documents) apply before the top k is taken, never after, so a
        filtered query still returns k results when k exist. ``vector`` None: keyword only."""

    def counts(self) -> dict[str, SourceCounts]:
        """Live documents and chunks per source."""

    def index_bytes(self) -> int:
        """Bytes the store occupies (file size, or the tables' and indexes' relation sizes)."""

    def generation(self) -> int:
        """Bumped by every committed change; searches report the generation they saw."""

    def compact(self, min_free_ratio: float) -> Compaction:
        """Reclaim the space of deleted rows (VACUUM) when at least ``min_free_ratio`` of it is free."""

    def close(self) -> None: ...
