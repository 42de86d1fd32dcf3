"""The knowledge server: one process per KnowledgeBase (``voicefleet knowledge serve``).

It opens the store (an existing index serves at once, before any sync), ingests each source every
refreshSeconds on the first replica (a failed sync keeps the last good index), checks freshness (a
source or document past maxAgeSeconds is Stale; with onStale withhold such documents are withheld by the
store), compacts
the store on schedule, and answers the HTTP API (docs/knowledge.md):

    POST /v1/search  SearchRequest -> SearchResponse      GET /v1/status -> KnowledgeStatus
    POST /v1/sync    SyncRequest -> 202                   GET /healthz, /readyz

Every store call blocks, so it runs in a worker thread; one lock keeps ingestion and compaction apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import get_args

from aiohttp import web
from pydantic import ValidationError

from ..sessions.refusals import http_error
from ..transports.http_guard import HttpLimits, body_guard
from . import server_metrics as m
from .embedder import Embedder
from .freshness import SyncOutcome, document_stale, ingests, sync_outcome
from .ingest import Ingestor, is_stale, stale_documents
from .models import (
    KnowledgeStatus,
    SearchRequest,
    SearchResponse,
    SourceError,
    SourceStatus,
    SyncRequest,
)
from .spec import KnowledgeBaseConfig, SourceSpec
from .store import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # a search request is a query of at most 4,000 characters
STATUS_REFRESH_SECONDS = 15.0  # counts and sizes for the gauges and /v1/status, between syncs


def validation_message(exc: ValidationError) -> str:
    """The first problems of a request, as a line a client can act on."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


@dataclass
class _Source:
    spec: SourceSpec
    status: SourceStatus
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class KnowledgeServer:
    def __init__(
        self,
        config: KnowledgeBaseConfig,
        open_store: Callable[[], Store],
        embedder: Embedder,
        ingestor: Callable[[Store], Ingestor],
        *,
        pod_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.kb = config.name
        self._open_store = open_store
        self.embedder = embedder
        self._make_ingestor = ingestor
        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.ingests = ingests(pod_name, config.spec.replicas)
        self.clock = clock
        self.started_at = clock()
        self.sources = {s.name: _Source(s, SourceStatus(name=s.name)) for s in config.spec.sources}
        self.status = KnowledgeStatus(ready=False, embedding_model=embedder.model_id)
        self._lock = asyncio.Lock()  # ingestion and compaction, one at a time
        self._tasks: list[asyncio.Task[None]] = []
        for name in self.sources:  # read at every scrape
            m.INGESTION_LAG_SECONDS.labels(self.kb, name).set_function(functools.partial(self.lag, name))
        # Every series exported at 0 from the start: a rate() or increase() then counts the first search,
        # the first compaction and the first failed sync too (a series born at 1 shows no increase).
        for metric in (
            m.SEARCH_SECONDS,
            m.SEARCHES_TOTAL,
            m.SEARCH_EMPTY_TOTAL,
            m.COMPACTION_SECONDS,
            m.COMPACTION_FREED_BYTES_TOTAL,
        ):
            metric.labels(self.kb)
        for name in self.sources:
            for outcome in get_args(SyncOutcome):
                m.SYNC_TOTAL.labels(self.kb, name, outcome)

    def lag(self, name: str) -> float:
        """Seconds since the source's last successful sync (since the server's start before one)."""
        return self.clock() - (self.sources[name].status.last_success or self.started_at)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store (ready from then on) and start the background loops."""
        self.store = await asyncio.to_thread(self._open_store)
        self.ingestor = self._make_ingestor(self.store)
        if self.ingests:  # before serving: a store from before per-document freshness has no policy yet
            for source in self.sources.values():
                await self.ingestor.withhold(source.spec)
        await self.refresh_status()
        self.status.ready = True
        log.info("knowledge base %s: store open, serving (ingests: %s)", self.kb, self.ingests)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._status_loop(), name="kb-status"))
        if self.ingests:
            self._tasks.append(loop.create_task(self._ingest(), name="kb-ingest"))
            self._tasks.append(loop.create_task(self._compaction_loop(), name="kb-compaction"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        async with self._lock:  # a sync or compaction in its thread finishes first
            if self.store is not None:
                await asyncio.to_thread(self.store.close)
                self.store = None
        self.status.ready = False

    # ------------------------------------------------------------------ ingestion

    async def _ingest(self) -> None:
        store = self.store
        assert store is not None and self.ingestor is not None
        active = await asyncio.to_thread(store.active_model)
        if active is not None and active != self.embedder.model_id:
            log.info("knowledge base %s: re-embedding %s -> %s", self.kb, active, self.embedder.model_id)
            async with self._lock:
                await self.ingestor.reembed()
        async with asyncio.TaskGroup() as group:
            for source in self.sources.values():
                group.create_task(self._sync_loop(source))

    async def _sync_loop(self, source: _Source) -> None:
        while True:
            await self.sync(source.spec.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(source.spec.refresh_seconds):
                    await source.wake.wait()
            source.wake.clear()

    async def sync(self, name: str) -> SourceStatus:
        """Sync one source now; whatever fails, the last good index keeps serving."""
        source = self.sources[name]
        assert self.ingestor is not None
        async with self._lock:
            attempt = self.clock()
            try:
                status = await self.ingestor.sync(source.spec, attempt)
            except Exception as exc:  # a bug or an unforeseen failure: counted, reported, retried
                log.exception("knowledge base %s: sync of %s failed", self.kb, name)
                error = SourceError(reason="Internal", message=f"{type(exc).__name__}: {exc}", at=attempt)
                status = source.status.model_copy(
                    update={"last_sync": attempt, "errors": [error, *source.status.errors][:20]}
                )
        outcome = sync_outcome(status, attempt)
        source.status = status
        m.SYNC_TOTAL.labels(self.kb, name, outcome).inc()
        log.info(
            "knowledge base %s: sync of %s: %s",
            self.kb,
            name,
            outcome,
            extra={
                "kb": self.kb,
                "source": name,
                "outcome": outcome,
                "documents": status.documents,
                "chunks": status.chunks,
                "errors": [e.reason for e in status.errors],
            },
        )
        await self.refresh_status()
        return status

    def request_sync(self, names: list[str] | None) -> None:
        for name in names if names is not None else list(self.sources):
            self.sources[name].wake.set()

    # ------------------------------------------------------------------ status and freshness

    async def refresh_status(self) -> KnowledgeStatus:
        """Counts, sizes and freshness into the status and the gauges."""
        store = self.store
        if store is None:
            return self.status

        now = self.clock()

        def read() -> tuple[dict[str, tuple[int, int]], dict[str, int], int, int, str | None]:
            counts = {k: (v.documents, v.chunks) for k, v in store.counts().items()}
            old = {name: stale_documents(store, s.spec, now) for name, s in self.sources.items()}
            return counts, old, store.index_bytes(), store.generation(), store.active_model()

        counts, old, size, generation, active = await asyncio.to_thread(read)
        for name, source in self.sources.items():
            docs, chunks = counts.get(name, (0, 0))
            stale = is_stale(source.spec, source.status.last_success, self.started_at, now, old[name])
            source.status = source.status.model_copy(
                update={"documents": docs, "chunks": chunks, "stale": stale, "stale_documents": old[name]}
            )
            m.DOCUMENTS.labels(self.kb, name).set(docs)
            m.CHUNKS.labels(self.kb, name).set(chunks)
            m.SOURCE_STALE.labels(self.kb, name).set(int(stale))
        m.INDEX_BYTES.labels(self.kb).set(size)
        self.status = self.status.model_copy(
            update={
                "documents": sum(d for d, _ in counts.values()),
                "chunks": sum(c for _, c in counts.values()),
                "index_bytes": size,
                "generation": generation,
                "embedding_model": active or self.embedder.model_id,
                "sources": [s.status for s in self.sources.values()],
            }
        )
        return self.status

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_REFRESH_SECONDS)
            try:
                await self.refresh_status()
            except Exception:
                log.exception("knowledge base %s: status refresh failed", self.kb)

    # ------------------------------------------------------------------ compaction

    async def compact(self) -> None:
        """One maintenance run (VACUUM when enough of the store is free), measured."""
        assert self.store is not None
        store, ratio = self.store, self.config.spec.maintenance.compact_when_free_ratio
        async with self._lock:
            result = await asyncio.to_thread(store.compact, ratio)
        log.info(
            "knowledge base %s: compaction %s",
            self.kb,
            "skipped" if result.skipped else "ran",
            extra={"kb": self.kb, **result.model_dump()},
        )
        if result.skipped:
            return
        now = self.clock()
        m.COMPACTION_SECONDS.labels(self.kb).observe(result.seconds)
        m.COMPACTION_FREED_BYTES_TOTAL.labels(self.kb).inc(max(0, result.bytes_before - result.bytes_after))
        m.LAST_COMPACTION_TIMESTAMP_SECONDS.labels(self.kb).set(now)
        self.status.last_compaction = now
        await self.refresh_status()

    async def _compaction_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.spec.maintenance.compact_seconds)
            try:
                await self.compact()
            except Exception:
                log.exception("knowledge base %s: compaction failed", self.kb)

    # ------------------------------------------------------------------ search

    def search(self, request: SearchRequest) -> SearchResponse:
        """Blocking (a worker thread): embed the query, search the store."""
        store = self.store
        assert store is not None
        spec = self.config.spec.search
        started = time.perf_counter()
        now = self.clock()
        mode = request.mode or spec.mode
        vector = None if mode == "keyword" else self.embedder.embed([request.query])[0]
        hits = store.search(
            request.query,
            vector,
            k=request.k,
            partitions=request.partitions,
            mode=mode,
            candidates=max(spec.candidates, request.k),
            rrf_k=spec.rrf_k,
            keyword_weight=spec.keyword_weight,
            now=now,
        )
        for hit in hits:  # onStale serve: a document past maxAgeSeconds is served, flagged
            source = self.sources.get(hit.source)
            hit.stale = source is not None and document_stale(
                source.spec.max_age_seconds, hit.vouched_at, now
            )
        took = time.perf_counter() - started
        m.SEARCH_SECONDS.labels(self.kb).observe(took)
        m.SEARCHES_TOTAL.labels(self.kb).inc()
        if not hits:
            m.SEARCH_EMPTY_TOTAL.labels(self.kb).inc()
        return SearchResponse(hits=hits, took_ms=took * 1000, generation=store.generation())

    # ------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        limits = HttpLimits(max_body_bytes=MAX_BODY_BYTES)
        app = web.Application(client_max_size=limits.max_body_bytes, middlewares=[body_guard(limits)])
        app.add_routes(
            [
                web.post("/v1/search", self._search),
                web.get("/v1/status", self._status),
                web.post("/v1/sync", self._sync),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
            ]
        )
        return app

    async def _search(self, request: web.Request) -> web.Response:
        try:
            query = SearchRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            return http_error("invalid_argument", f"bad search request: {validation_message(exc)}")
        if self.store is None:
            return http_error("unavailable", "the index is not open yet", retry_after_seconds=1)
        try:
            answer = await asyncio.to_thread(self.search, query)
        except Exception as exc:
            log.exception("knowledge base %s: search failed", self.kb)
            return http_error("internal", f"search failed: {type(exc).__name__}")
        return web.json_response(answer.dump())

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response(self.status.dump())

    async def _sync(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
            sync = SyncRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return http_error("invalid_argument", f"bad sync request: {validation_message(exc)}")
        unknown = sorted(set(sync.sources or []) - set(self.sources))
        if unknown:
            return http_error("invalid_argument", f"unknown sources: {', '.join(unknown)}")
        if not self.ingests:
            return http_error("wrong_pod", "this replica does not ingest; ask the first one (ordinal 0)")
        if self.store is None:
            return http_error("unavailable", "the index is not open yet", retry_after_seconds=1)
        self.request_sync(sync.sources)
        return web.json_response({"accepted": sync.sources or sorted(self.sources)}, status=202)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready = self.status.ready
        return web.json_response({"ready": ready}, status=200 if ready else 503)
