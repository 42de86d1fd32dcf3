"""What crosses the knowledge server's boundaries: documents and chunks into the store, the search API, and
the status the operator copies into the KnowledgeBase's status."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import Model


class Document(Model):
    """One source document as fetched, before chunking."""

    doc_id: str = Field(
        description="Stable id: the source name and the document's key in it (path, key, URL)."
    )
    source: str
    partition: str = ""
    uri: str = Field(description="Where it came from (configmap://ns/name/key, file path, URL, s3://...).")
    title: str = ""
    text: str
    content_hash: str = Field(description="SHA-256 of the text: unchanged documents are not re-embedded.")
    fetched_at: float = Field(description="Unix time of the fetch.")


class Chunk(Model):
    """A piece of a document: what is embedded, indexed and returned."""

    chunk_id: str = Field(description="doc_id + '#' + ordinal.")
    doc_id: str
    ordinal: int
    text: str
    start: int = Field(description="Character offset of the chunk in the document's text.")
    end: int
    heading: str = Field(default="", description="Markdown chunks: the heading path, ' > '-joined.")


class Hit(Model):
    """One search result."""

    doc_id: str
    chunk_id: str
    source: str
    partition: str
    uri: str
    title: str
    heading: str = Field(default="", description="The chunk's heading path (markdown), ' > '-joined.")
    text: str
    score: float = Field(description="Fused score (higher is better).")
    vector_rank: int | None = None
    keyword_rank: int | None = None
    vouched_at: float | None = Field(
        default=None, description="Unix time its source last vouched for the document (read or confirmed it)."
    )
    stale: bool = Field(
        default=False,
        description="Not vouched for within its source's maxAgeSeconds, served (onStale: serve).",
    )


class SearchRequest(Model):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=50)
    partitions: list[str] | None = Field(
        default=None, max_length=16, description="Partitions to search besides the shared one; None: all."
    )
    mode: Literal["hybrid", "vector", "keyword"] | None = Field(default=None, description="None: the base's.")


class SearchResponse(Model):
    hits: list[Hit]
    took_ms: float
    generation: int = Field(description="The index generation searched (bumped by every committed change).")


class SourceError(Model):
    """Why a source's last sync (or one of its documents) failed; what was indexed before keeps serving."""

    reason: str = Field(description="CamelCase: Unreachable, TooLarge, NotText, Malformed, Duplicate, ...")
    message: str
    document: str = ""
    at: float


class SourceStatus(Model):
    name: str
    documents: int = 0
    chunks: int = 0
    last_sync: float | None = Field(default=None, description="Unix time of the last sync attempt.")
    last_success: float | None = Field(default=None, description="Unix time of the last successful sync.")
    stale: bool = Field(
        default=False,
        description="Not synced successfully within maxAgeSeconds, or some of its documents not vouched for "
        "within it (stale_documents).",
    )
    stale_documents: int = Field(
        default=0,
        description="Documents no sync has read, nor the source confirmed unchanged, within maxAgeSeconds "
        "(refused or unreadable since): withheld under onStale withhold, flagged stale under serve.",
    )
    errors: list[SourceError] = Field(default_factory=list, max_length=20)


class KnowledgeStatus(Model):
    """GET /v1/status: the operator copies it into the KnowledgeBase's status."""

    ready: bool = Field(description="An index is loaded and searchable.")
    documents: int = 0
    chunks: int = 0
    index_bytes: int = 0
    embedding_model: str = ""
    generation: int = 0
    last_compaction: float | None = None
    sources: list[SourceStatus] = Field(default_factory=list)


class SyncRequest(Model):
    """POST /v1/sync: sync these sources now (a backfill); None: every source."""

    sources: list[str] | None = Field(default=None, max_length=32)
