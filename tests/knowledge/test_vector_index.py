"""The in-memory vector index: filters before top-k, the binary scan's recall, and snapshots under writes."""

from __future__ import annotations

import numpy as np

from agent_pod.knowledge.vector_index import EXACT_ROWS, VectorIndex, sign_bits

from .docs import near, unit


def clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Vectors in 200 clusters, like embeddings of related texts (random ones are all equally far)."""
    centres = unit(rng, 200, dim)
    return np.concatenate([near(c, rng, n // 200, spread=0.6) for c in centres])


def test_sign_bits_pack_into_whole_words() -> None:
    v = np.array([[1.0, -1.0, 1.0] + [-1.0] * 61, [-1.0] * 64], dtype=np.float32)
    bits = sign_bits(v)
    assert bits.dtype == np.uint64 and bits.shape == (2, 1)
    assert int(np.bitwise_count(bits[0]).sum()) == 2 and int(bits[1][0]) == 0
    assert sign_bits(np.ones((1, 70), dtype=np.float32)).shape == (1, 2)


def test_the_binary_scan_finds_the_exact_top_k_of_a_large_index() -> None:
    rng = np.random.default_rng(1)
    vectors = clustered(rng, 2 * EXACT_ROWS, 256)
    index = VectorIndex("m")
    index.add(list(range(len(vectors))), "", "s", vectors, 0.0)
    snapshot = index.snapshot()
    found = total = 0
    queries = np.stack([near(vectors[i], rng, 1, spread=0.3)[0] for i in rng.choice(len(vectors), 50)])
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:5].tolist())
        found += len(exact & set(snapshot.search(q, 5, None, {})))
        total += 5
    assert found / total >= 0.95


def test_filters_apply_before_the_top_k_in_a_large_index() -> None:
    rng = np.random.default_rng(2)
    query = unit(rng, 1, 128)[0]
    index = VectorIndex("m")
    n = EXACT_ROWS + 5000
    index.add(list(range(n)), "big", "s1", near(query, rng, n, spread=0.1), 0.0)
    index.add([n + i for i in range(7)], "small", "s2", near(-query, rng, 7, spread=0.5), 100.0)
    index.add([n + 7 + i for i in range(7)], "small", "s3", near(-query, rng, 7, spread=0.5), 100.0)
    index.add([n + 14], "small", "s3", near(-query, rng, 1, spread=0.5), 200.0)
    snapshot = index.snapshot()

    fresh = {"s3": 150.0, "s2": 100.0}  # s3's first document is older than its source allows
    assert sorted(snapshot.search(query, 10, {"small"}, fresh)) == [*(n + i for i in range(7)), n + 14]
    index.vouch([n + 7, n + 8], 160.0)  # the document's rows vouched for again
    assert {n + 7, n + 8} <= set(snapshot.search(query, 20, {"small"}, fresh))
    assert snapshot.search(query, 10, None, {"s1": 1.0}) and all(
        k >= n for k in snapshot.search(query, 10, None, {"s1": 1.0})
    )
    assert all(k < n for k in snapshot.search(query, 10, None, {}))
    assert snapshot.search(query, 10, {"nowhere"}, {}) == []


def test_removed_and_replaced_rows_and_a_snapshot_taken_before() -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 3000, 32)
    index = VectorIndex("m")
    index.add(list(range(3000)), "", "s", vectors, 0.0)
    before = index.snapshot()
    index.remove(range(2000))  # more than half dead: packed into new arrays
    index.add([2500], "", "s", vectors[:1], 0.0)  # key 2500 now carries row 0's vector
    after = index.snapshot()

    assert len(index) == 1000
    assert after.search(vectors[0], 1, None, {}) == [2500]
    assert after.search(vectors[5], 1, None, {}) != [5]
    assert before.search(vectors[2700], 1, None, {}) == [2700]  # an old snapshot still answers
