"""Reciprocal rank fusion: one ranking out of the keyword (BM25) and vector rankings of a hybrid search.

Pure: both stores rank their candidates, then fuse them here (Cormack et al. 2009: score = sum 1/(k + rank)).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fused:
    key: int
    score: float
    vector_rank: int | None  # 1-based rank in the vector ranking; None: not among its candidates
    keyword_rank: int | None


def reciprocal_rank_fusion(vector: list[int], keyword: list[int], rrf_k: int, limit: int) -> list[Fused]:
    """The ``limit`` best keys of both rankings (each best first, keys unique within one; one may be empty:
    a single-mode search, scored alike), best first. Ties go to the key ranked best anywhere, then to the
    smaller key, so the order is deterministic."""
    vector_ranks = {key: rank for rank, key in enumerate(vector, start=1)}
    keyword_ranks = {key: rank for rank, key in enumerate(keyword, start=1)}
    fused = []
    for key in vector_ranks.keys() | keyword_ranks.keys():
        v, w = vector_ranks.get(key), keyword_ranks.get(key)
        score = sum(1.0 / (rrf_k + rank) for rank in (v, w) if rank is not None)
        fused.append(Fused(key, score, v, w))
    fused.sort(key=lambda f: (-f.score, min(r for r in (f.vector_rank, f.keyword_rank) if r), f.key))
    return fused[:limit]
