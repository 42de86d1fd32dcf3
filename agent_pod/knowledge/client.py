"""The agent pod's client of knowledge servers: one search fanned out to a call's bases under a deadline.

A base that is down, slow or answers garbage is left out of that search (logged and counted): a turn
without its passages beats a late turn.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp

from ..config import KnowledgeBaseRef
from .models import Hit, SearchRequest, SearchResponse
from .retrieval_metrics import RETRIEVAL_BASE_FAILURES_TOTAL

log = logging.getLogger(__name__)

SEARCH_PATH = "/v1/search"


@dataclass
class Retrieval:
    hits: list[Hit]
    missing: list[str] = field(default_factory=list)  # bases left out (slow, down, bad answer)


def merge_hits(answers: list[list[Hit]], k: int, min_score: float) -> list[Hit]:
    """The best ``k`` hits of several bases at or above ``min_score``, each chunk once (pure)."""
    best: dict[str, Hit] = {}
    for hits in answers:
        for hit in hits:
            if hit.score >= min_score and (hit.chunk_id not in best or best[hit.chunk_id].score < hit.score):
                best[hit.chunk_id] = hit
    return sorted(best.values(), key=lambda h: h.score, reverse=True)[:k]


class KnowledgeClient:
    """One per call; its HTTP connections are reused across the call's searches."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def search_base(self, base: KnowledgeBaseRef, request: SearchRequest) -> SearchResponse:
        """One base's answer; raises on a transport error, a non-200 answer or a malformed body."""
        url = base.url.rstrip("/") + SEARCH_PATH
        async with self._client().post(url, json=request.dump()) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=body[:200].decode(errors="replace")
                )
        return SearchResponse.model_validate_json(body)

    async def search(
        self,
        bases: list[KnowledgeBaseRef],
        query: str,
        *,
        partitions: list[str] | None,
        k: int,
        min_score: float,
        budget_seconds: float,
    ) -> Retrieval:
        """Every base at once; what has answered when ``budget_seconds`` is up is merged."""
        if not bases:
            return Retrieval(hits=[])
        request = SearchRequest(query=query[:4000], k=k, partitions=partitions)
        tasks = {
            asyncio.get_running_loop().create_task(self.search_base(base, request)): base for base in bases
        }
        _, pending = await asyncio.wait(tasks, timeout=budget_seconds)
        for task in pending:
            task.cancel()
        answers: list[list[Hit]] = []
        missing: list[str] = []
        for task, base in tasks.items():
            if task in pending:
                reason = "timeout"
            elif (exc := task.exception()) is not None:
                reason = "error"
                log.warning("knowledge base %s: search failed: %s", base.name, exc or type(exc).__name__)
            else:
                answers.append(task.result().hits)
                continue
            missing.append(base.name)
            RETRIEVAL_BASE_FAILURES_TOTAL.labels(base=base.name, reason=reason).inc()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("knowledge bases without an answer within %g s: %s", budget_seconds, missing)
        return Retrieval(hits=merge_hits(answers, k, min_score), missing=missing)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
