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


def reciprocal_rank_fusion(
    vector: list[int], keyword: list[int], rrf_k: int, limit: int, keyword_weight: float = 1.0
) -> list[Fused]:
    """The ``limit`` best keys of both rankings (each best first, keys unique within one; one may be empty:
    a single-mode search, scored alike), best first; the keyword ranking counts ``keyword_weight`` times
    the vector ranking. Ties go to the key ranked best anywhere, then to the
    smaller key, so the order is deterministic."""
    vector_ranks = {key: rank for rank, key in enumerate(vector, start=1)}
    keyword_ranks = {key: rank for rank, key in enumerate(keyword, start=1)}
    unranked = len(vector) + len(keyword) + 1  # worse than any rank, for the tie-break
    order = []
    for key in vector_ranks.keys() | keyword_ranks.keys():
        v, w = vector_ranks.get(key), keyword_ranks.get(key)
        score = (1.0 / (rrf_k + v) if v else 0.0) + (keyword_weight / (rrf_k + w) if w else 0.0)
        order.append((-score, min(v or unranked, w or unranked), key, Fused(key, score, v, w)))
    order.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in order[:limit]]
