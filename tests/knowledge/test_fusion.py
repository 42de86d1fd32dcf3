"""Reciprocal rank fusion, directly."""

from __future__ import annotations

import pytest

from agent_pod.knowledge.fusion import reciprocal_rank_fusion


def test_a_key_in_both_rankings_beats_keys_in_one() -> None:
    fused = reciprocal_rank_fusion([1, 2, 3], [3, 4], rrf_k=60, limit=10)
    assert fused[0].key == 3
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert (fused[0].vector_rank, fused[0].keyword_rank) == (3, 1)
    assert [f.key for f in fused] == [3, 1, 2, 4]  # 2 and 4 tie (both second somewhere): smaller key


def test_ties_break_by_best_rank_then_key_and_limit_cuts() -> None:
    fused = reciprocal_rank_fusion([5, 6], [6, 5], rrf_k=10, limit=10)
    assert [f.key for f in fused] == [5, 6]  # same score and best rank: the smaller key
    assert len(reciprocal_rank_fusion([1, 2, 3], [4, 5, 6], rrf_k=60, limit=2)) == 2


def test_one_empty_ranking_keeps_the_other_in_order() -> None:
    fused = reciprocal_rank_fusion([], [9, 7, 8], rrf_k=1, limit=10)
    assert [(f.key, f.keyword_rank, f.vector_rank) for f in fused] == [
        (9, 1, None),
        (7, 2, None),
        (8, 3, None),
    ]
    assert fused[0].score == pytest.approx(0.5)
    assert reciprocal_rank_fusion([], [], rrf_k=60, limit=5) == []


def test_a_lighter_keyword_ranking_lets_the_vector_ranking_decide() -> None:
    # Each ranking puts a different key first: equal weights tie (broken by key), a lighter keyword
    # ranking hands the lead to the vector's first.
    assert [f.key for f in reciprocal_rank_fusion([2, 1], [1, 2], rrf_k=60, limit=2)] == [1, 2]
    lighter = reciprocal_rank_fusion([2, 1], [1, 2], rrf_k=60, limit=2, keyword_weight=0.5)
    assert [f.key for f in lighter] == [2, 1]
    assert lighter[0].score == 1 / 61 + 0.5 / 62
