"""Syncing one source into the store: fetch, keep what is unchanged, chunk and embed what is new or
changed, tombstone what the source no longer has, and re-embed the base when the model changes.

A failed or partial sync changes nothing it cannot vouch for: documents are only tombstoned after a
complete listing, and a document that could not be read or was refused keeps its indexed version, but
not its freshness: each document is fresh for maxAgeSeconds from the last sync that read it or that the
source confirmed it unchanged to, whatever happened to the rest of its source. The pure decisions (what
is a duplicate, what to tombstone, which documents a sync vouches for, when a source is stale, when its
documents are withheld) are the small functions at the top, tested directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from . import ingest_metrics as m
from .chunking import chunk_document, embedding_text
from .embedder import Embedder
from .freshness import fresh_since
from .models import Chunk, Document, SourceError, SourceStatus
from .sources import fetch
from .sources.fetched import Fetched, Validator
from .sources.mounts import Mounts
from .spec import SourceSpec
from .store import Store

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # SourceStatus.errors' bound


def dedupe(
    documents: list[Document], kept_hashes: dict[str, str], now: float
) -> tuple[list[Document], list[SourceError]]:
    """Documents with distinct content, each duplicate reported instead (a Duplicate notice). The
    documents kept unread (``kept_hashes``: their indexed hashes) come first, then by doc id."""
    first = {h: doc_id for doc_id, h in sorted(kept_hashes.items(), reverse=True)}
    unique, notices = [], []
    for doc in sorted(documents, key=lambda d: d.doc_id):
        original = first.setdefault(doc.content_hash, doc.doc_id)
        if original == doc.doc_id:
            unique.append(doc)
        else:
            notices.append(
                SourceError(
                    reason="Duplicate",
                    message=f"same content as {original}: indexed once",
                    document=doc.doc_id,
                    at=now,
                )
            )
    return unique, notices


def changed(documents: list[Document], indexed: dict[str, str]) -> list[Document]:
    """The documents whose content the store does not have yet."""
    return [d for d in documents if indexed.get(d.doc_id) != d.content_hash]


def to_tombstone(indexed: Iterable[str], fetched: Fetched, live: list[Document]) -> set[str]:
    """Indexed documents the source no longer has; none unless the source was listed and read in full."""
    if not fetched.complete:
        return set()
    return set(indexed) - {d.doc_id for d in live} - fetched.kept


def vouched(fetched: Fetched, live: list[Document], indexed: dict[str, str]) -> set[str]:
    """Indexed documents whose indexed version this sync vouches for: read and found unchanged, or
    confirmed unchanged by the source (conditional fetch). A new or changed document is vouched for by
    its upsert, once indexed; a refused, unreadable or unlisted one is not vouched for."""
    read = {d.doc_id for d in live if indexed.get(d.doc_id) == d.content_hash}
    return read | (fetched.confirmed & indexed.keys())


def is_stale(
    source: SourceSpec, last_success: float | None, since: float, now: float, stale_documents: int = 0
) -> bool:
    """Not synced successfully for longer than maxAgeSeconds (before a first success, counted from
    ``since``, the first attempt, so a restart does not make every source stale at once), or some of its
    documents not vouched for within it (``stale_documents``, as the function of that name counts)."""
    if source.max_age_seconds is None:
        return False
    unsynced = now - (last_success if last_success is not None else since) > source.max_age_seconds
    return unsynced or stale_documents > 0


def withhold_after(source: SourceSpec) -> float | None:
    """How long after its last vouch a document of the source stops being served: maxAgeSeconds with
    onStale withhold; None (served however old, flagged stale) otherwise."""
    if source.max_age_seconds is None or source.on_stale != "withhold":
        return None
    return float(source.max_age_seconds)


def stale_documents(store: Store, source: SourceSpec, now: float) -> int:
    """Blocking: how many of the source's documents were not vouched for within maxAgeSeconds."""
    if source.max_age_seconds is None:
        return 0
    return store.unvouched_since(source.name, fresh_since(source.max_age_seconds, now))


@dataclass
class _SourceState:
    since: float
    last_sync: float | None = None
    last_success: float | None = None
    validators: dict[str, Validator] = field(default_factory=dict)


class Ingestor:
    def __init__(
        self, kb: str, store: Store, embedder: Embedder, *, mounts: Mounts | None = None, batch_size: int = 64
    ) -> None:
        self.kb = kb
        self.store = store
        self.embedder = embedder
        self.mounts = mounts or Mounts()
        self.batch_size = batch_size
        self._sources: dict[str, _SourceState] = {}
        self._withholding: set[str] = set()  # sources whose withhold policy the store has from this spec

    async def sync(self, source: SourceSpec, now: float) -> SourceStatus:
        """One sync of ``source``; its problems are in the status' errors, never raised."""
        state = self._sources.setdefault(source.name, _SourceState(since=now))
        state.last_sync = now
        errors: list[SourceError] = []
        try:
            if source.name not in self._withholding:
                await self.withhold(source)
            indexed = await asyncio.to_thread(self.store.document_hashes, source.name)
        except Exception as exc:
            log.exception("knowledge base %s: store unreadable for %s", self.kb, source.name)
            errors.append(SourceError(reason="StoreFailed", message=str(exc), at=now))
            return await self._status(source, state, errors, now)
        # a validator only counts for what the store really has (an emptied store re-reads everything)
        validators = {k: v for k, v in state.validators.items() if k in indexed}
        fetched = await fetch(source, self.mounts, validators, now)
        errors.extend(fetched.errors)
        live, duplicates = dedupe(
            fetched.documents, {d: indexed[d] for d in fetched.kept if d in indexed}, now
        )
        errors.extend(duplicates)
        gone: set[str] = set()
        try:
            unchanged = vouched(fetched, live, indexed)
            if unchanged:
                await asyncio.to_thread(self.store.vouch, source.name, sorted(unchanged), now)
            await self._index(source, changed(live, indexed))
            gone = to_tombstone(indexed, fetched, live)
            if gone:
                removed = await asyncio.to_thread(self.store.tombstone, source.name, sorted(gone))
                m.DOCUMENTS_TOMBSTONED_TOTAL.labels(self.kb, source.name).inc(removed)
        except Exception as exc:  # the embedder or the store failed: what is written stays, retried next
            log.exception("knowledge base %s: indexing %s failed", self.kb, source.name)
            errors.append(SourceError(reason="IndexFailed", message=f"{type(exc).__name__}: {exc}", at=now))
        else:
            # what was read is indexed now: its validators vouch for the store's versions
            merged = validators | fetched.validators
            state.validators = {doc_id: v for doc_id, v in merged.items() if doc_id not in gone}
            if fetched.complete:
                state.last_success = now
        for error in errors:
            m.INGEST_ERRORS_TOTAL.labels(self.kb, source.name, error.reason).inc()
        if errors:
            log.warning(
                "knowledge base %s: source %s: %s",
                self.kb,
                source.name,
                ", ".join(sorted({e.reason for e in errors})),
                extra={
                    "kb": self.kb,
                    "source": source.name,
                    "errors": [e.dump() for e in errors[:MAX_ERRORS]],
                },
            )
        return await self._status(source, state, errors, now)

    async def withhold(self, source: SourceSpec) -> None:
        """Give the store the source's withhold policy (searches apply it from then on)."""
        await asyncio.to_thread(self.store.set_withhold, source.name, withhold_after(source))
        self._withholding.add(source.name)

    async def _status(
        self, source: SourceSpec, state: _SourceState, errors: list[SourceError], now: float
    ) -> SourceStatus:
        try:
            counts = (await asyncio.to_thread(self.store.counts)).get(source.name)
            old = await asyncio.to_thread(stale_documents, self.store, source, now)
        except Exception:  # the status still reports the sync; the counts come back next time
            log.exception("knowledge base %s: store counts unreadable", self.kb)
            counts, old = None, 0
        return SourceStatus(
            name=source.name,
            documents=counts.documents if counts else 0,
            chunks=counts.chunks if counts else 0,
            last_sync=state.last_sync,
            last_success=state.last_success,
            stale=is_stale(source, state.last_success, state.since, now, old),
            stale_documents=old,
            errors=errors[:MAX_ERRORS],
        )

    async def _index(self, source: SourceSpec, documents: list[Document]) -> None:
        """Chunk, embed (in batches) and upsert ``documents``, a batch of chunks at a time."""
        if not documents:
            return
        model = self.embedder.model_id
        if await asyncio.to_thread(self.store.active_model) is None:
            await asyncio.to_thread(self.store.activate_model, model)  # a new store searches this model
        pending: list[tuple[Document, list[Chunk]]] = []
        for doc in documents:
            chunks = await asyncio.to_thread(chunk_document, doc.doc_id, doc.text, source.chunking)
            pending.append((doc, chunks))
            if sum(len(c) for _, c in pending) >= self.batch_size:
                await self._write(source, pending, model)
                pending = []
        await self._write(source, pending, model)

    async def _write(
        self, source: SourceSpec, pending: list[tuple[Document, list[Chunk]]], model: str
    ) -> None:
        vectors = await self._embed(
            [embedding_text(doc.title, c.heading, c.text) for doc, chunks in pending for c in chunks]
        )
        offset = 0
        for doc, chunks in pending:
            rows = vectors[offset : offset + len(chunks)]
            await asyncio.to_thread(self.store.upsert, doc, chunks, model, rows)
            offset += len(chunks)
            m.DOCUMENTS_INDEXED_TOTAL.labels(self.kb, source.name).inc()

    async def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, embedded ``batch_size`` at a time in a worker thread."""
        parts = []
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i : i + self.batch_size]
            started = time.perf_counter()
            parts.append(np.asarray(await asyncio.to_thread(self.embedder.embed, batch), dtype=np.float32))
            m.EMBED_SECONDS.labels(self.kb).observe(time.perf_counter() - started)
            m.CHUNKS_EMBEDDED_TOTAL.labels(self.kb, self.embedder.model_id).inc(len(batch))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    async def reembed(self, batch: int = 256) -> int:
        """Embed every chunk with the embedder's model when the store searches another one, ``batch``
        chunks at a time (searches keep using the old vectors meanwhile), then switch the store over.
        How many chunks it embedded; 0 when the store already searches this model."""
        model = self.embedder.model_id
        active = await asyncio.to_thread(self.store.active_model)
        if active == model:
            return 0
        done = 0
        previous: list[str] = []
        while rows := await asyncio.to_thread(self.store.chunks_without_vectors, model, batch):
            ids = [chunk_id for chunk_id, _ in rows]
            if ids == previous:  # the store did not keep the last batch: stop rather than spin
                raise RuntimeError(f"store kept no vectors of {model} for {ids[:3]}")
            vectors = await self._embed([text for _, text in rows])
            await asyncio.to_thread(self.store.put_vectors, model, ids, vectors)
            done += len(rows)
            previous = ids
        await asyncio.to_thread(self.store.activate_model, model)
        log.info(
            "knowledge base %s: re-embedded %d chunks, searching %s (was %s)", self.kb, done, model, active
        )
        return done
