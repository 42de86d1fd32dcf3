"""What only the SQLite store does: its file, its compaction, reopening, and its FTS query text."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from agent_pod.knowledge import sqlite_store
from agent_pod.knowledge.sqlite_store import SqliteStore

from .docs import document, near, unit


def test_compaction_shrinks_the_file_after_deletes_and_skips_when_little_is_free(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kb.sqlite")
    rng = np.random.default_rng(1)
    for d in range(40):
        doc, chunks = document(f"d{d}", [f"document {d} paragraph {i} " * 40 for i in range(20)])
        store.upsert(doc, chunks, "m1", unit(rng, 20, dim=256))
    assert store.compact(min_free_ratio=0.5).skipped  # nothing deleted yet
    store.tombstone("docs", [f"d{d}" for d in range(36)])
    assert store.free_ratio() > 0.5

    result = store.compact(min_free_ratio=0.2)

    assert not result.skipped
    assert result.bytes_after < result.bytes_before / 3
    assert store.index_bytes() == result.bytes_after
    assert store.free_ratio() < 0.05
    assert (
        len(
            store.search(
                "paragraph", None, k=50, partitions=None, mode="keyword", candidates=50, rrf_k=60, now=0
            )
        )
        == 50
    )
    store.close()


def test_a_reopened_store_serves_what_was_committed(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 2)
    store = SqliteStore(tmp_path / "kb.sqlite")
    doc, chunks = document("d", ["first", "second"])
    store.upsert(doc, chunks, "m1", vectors)
    generation = store.generation()
    store.close()

    reopened = SqliteStore(tmp_path / "kb.sqlite")
    assert reopened.generation() == generation and reopened.active_model() == "m1"
    hits = reopened.search(
        "x", vectors[1], k=1, partitions=None, mode="vector", candidates=5, rrf_k=60, now=0
    )
    assert [h.chunk_id for h in hits] == ["d#1"]
    reopened.close()


def test_a_write_from_another_connection_is_seen_by_the_next_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 2)
    serving = SqliteStore(tmp_path / "kb.sqlite")
    doc, chunks = document("a", ["alpha"])
    serving.upsert(doc, chunks, "m1", vectors[:1])
    assert serving.search("x", vectors[0], k=1, partitions=None, mode="vector", candidates=5, rrf_k=60, now=0)

    other = SqliteStore(tmp_path / "kb.sqlite")  # e.g. a maintenance process: the serving index is behind it
    doc, chunks = document("b", ["beta"])
    other.upsert(doc, chunks, "m1", vectors[1:])
    other.close()

    hits = serving.search("x", vectors[1], k=1, partitions=None, mode="vector", candidates=5, rrf_k=60, now=0)
    assert [h.chunk_id for h in hits] == ["b#0"]
    serving.close()


def test_the_store_s_own_writes_update_the_loaded_vector_index_without_a_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(4)
    store = SqliteStore(tmp_path / "kb.sqlite")
    doc, chunks = document("first", ["first"])
    store.upsert(doc, chunks, "m1", unit(rng, 1))
    caplog.set_level(logging.INFO, logger="agent_pod.knowledge.sqlite_store")

    def nearest(vector: np.ndarray) -> str:
        hits = store.search("x", vector, k=1, partitions=None, mode="vector", candidates=5, rrf_k=60, now=0)
        return hits[0].doc_id

    nearest(unit(rng, 1)[0])
    for i in range(10):
        vectors = unit(rng, 2)
        doc, chunks = document(f"d{i}", ["a", "b"])
        store.upsert(doc, chunks, "m1", vectors)
        assert nearest(vectors[1]) == f"d{i}"
        store.tombstone("docs", [f"d{i}"])
        assert nearest(vectors[1]) != f"d{i}"

    loads = [r for r in caplog.records if r.getMessage() == "knowledge vector index loaded"]
    assert len(loads) == 1
    store.close()


@pytest.mark.parametrize("by_id", [True, False], ids=["chunk-ids", "per-row-sql"])
def test_documents_withheld_one_by_one_never_crowd_out_k(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_id: bool
) -> None:
    """Few withheld chunks are masked by id; past WITHHELD_KEYS the per-row SQL condition does it."""
    if not by_id:
        monkeypatch.setattr(sqlite_store, "WITHHELD_KEYS", 10)
    store = SqliteStore(tmp_path / "kb.sqlite")
    rng = np.random.default_rng(2)
    query = unit(rng, 1)[0]
    # 60 chunks that rank first both ways, of a document not vouched for within the max age
    old, old_chunks = document("old", [f"tariff tariff tariff {i}" for i in range(60)], fetched_at=0.0)
    store.upsert(old, old_chunks, "m1", near(query, rng, 60, spread=0.05))
    fresh, fresh_chunks = document(
        "new", [f"the {i} tariff in longer words" for i in range(8)], fetched_at=950.0
    )
    store.upsert(fresh, fresh_chunks, "m1", near(-query, rng, 8, spread=0.5))
    store.set_withhold("docs", 100.0)
    for mode in ("keyword", "vector", "hybrid"):
        hits = store.search(
            "tariff",
            query,
            k=5,
            partitions=None,
            mode=mode,
            candidates=5,
            rrf_k=60,
            now=1000.0,
        )
        assert len(hits) == 5 and {h.doc_id for h in hits} == {"new"}, mode
    store.close()
