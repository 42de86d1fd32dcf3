"""The Store contract, run against every store (tests/knowledge/conftest.py): what is served and what
never is."""

from __future__ import annotations

import threading
import time

import numpy as np

from agent_pod.knowledge.store import Store

from .docs import DIM, document, near, unit

NOW = 1_000_000.0


def search(store: Store, query: str, vector: np.ndarray | None, **kw: object) -> list[str]:
    """chunk_ids of the hits, best first."""
    args: dict[str, object] = {"k": 5, "partitions": None, "mode": "hybrid", "candidates": 50, "rrf_k": 60}
    args.update(kw)
    hits = store.search(query, vector, now=NOW, **args)  # type: ignore[arg-type]
    return [h.chunk_id for h in hits]


def test_keyword_and_vector_find_their_chunk_and_hybrid_fuses_both(store: Store) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 3)
    doc, chunks = document(
        "faq", ["Opening hours are nine to five.", "The zebra tariff is cheap.", "Parking is free."]
    )
    store.upsert(doc, chunks, "m1", vectors)

    assert store.active_model() == "m1"
    assert search(store, "zebra", None, mode="keyword") == ["faq#1"]
    assert search(store, "anything", vectors[2], mode="vector", k=1) == ["faq#2"]
    hybrid = store.search(
        "zebra", vectors[2], k=3, partitions=None, mode="hybrid", candidates=50, rrf_k=60, now=NOW
    )
    assert {h.chunk_id for h in hybrid[:2]} == {"faq#1", "faq#2"}
    top = {h.chunk_id: h for h in hybrid}
    assert top["faq#1"].keyword_rank == 1 and top["faq#2"].vector_rank == 1
    assert top["faq#1"].uri == "file:///faq" and top["faq#1"].title == "Faq" and top["faq#1"].source == "docs"
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_keyword_query_with_operators_and_quotes_is_plain_words(store: Store) -> None:
    doc, chunks = document("q", ['He said "NEAR" and OR AND NOT (price*)'])
    store.upsert(doc, chunks, "m1", unit(np.random.default_rng(2), 1))
    assert search(store, 'NEAR( "price* AND', None, mode="keyword") == ["q#0"]
    assert search(store, '"" ()*', None, mode="keyword") == []


def test_upsert_replaces_the_document_and_its_chunks(store: Store) -> None:
    rng = np.random.default_rng(3)
    doc, chunks = document("menu", ["Soup of the day: tomato.", "Dessert: apple pie.", "Coffee."])
    store.upsert(doc, chunks, "m1", unit(rng, 3))
    new_doc, new_chunks = document("menu", ["Soup of the day: lentil."])
    store.upsert(new_doc, new_chunks, "m1", unit(rng, 1))

    assert store.counts()["docs"].model_dump() == {"documents": 1, "chunks": 1}
    assert search(store, "tomato pie coffee", None, mode="keyword") == []
    assert search(store, "soup", None, mode="keyword") == ["menu#0"]
    assert store.document_hashes("docs") == {"menu": new_doc.content_hash}
    every = search(store, "x", unit(rng, 1)[0], mode="vector", k=10)
    assert every == ["menu#0"]


def test_document_hashes_are_per_source_and_drop_tombstoned(store: Store) -> None:
    rng = np.random.default_rng(4)
    a, a_chunks = document("a", ["alpha"], source="one")
    b, b_chunks = document("b", ["beta"], source="one")
    c, c_chunks = document("c", ["gamma"], source="two")
    for doc, chunks in ((a, a_chunks), (b, b_chunks), (c, c_chunks)):
        store.upsert(doc, chunks, "m1", unit(rng, 1))
    assert store.document_hashes("one") == {"a": a.content_hash, "b": b.content_hash}
    store.tombstone("one", ["b"])
    assert store.document_hashes("one") == {"a": a.content_hash}
    assert store.document_hashes("two") == {"c": c.content_hash}


def test_tombstoned_documents_are_never_served_and_the_removal_is_recorded(store: Store) -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 2)
    keep, keep_chunks = document("keep", ["The refund policy is thirty days."])
    gone, gone_chunks = document("gone", ["The refund policy is ninety days."])
    store.upsert(keep, keep_chunks, "m1", vectors[:1])
    store.upsert(gone, gone_chunks, "m1", vectors[1:])
    assert set(search(store, "refund policy", vectors[1])) == {"keep#0", "gone#0"}

    assert store.tombstone("other-source", ["gone"]) == 0  # a source removes only its own documents
    assert store.tombstone("docs", ["gone", "never-was"]) == 1

    assert search(store, "refund policy", vectors[1]) == ["keep#0"]
    assert search(store, "ninety", vectors[1], mode="vector") == ["keep#0"]
    assert search(store, "ninety", None, mode="keyword") == []
    assert store.counts()["docs"].model_dump() == {"documents": 1, "chunks": 1}
    assert [doc_id for doc_id, _ in store.tombstones("docs")] == ["gone"]
    assert abs(store.tombstones("docs")[0][1] - time.time()) < 60


def test_a_document_not_vouched_for_within_max_age_is_never_served_until_vouched_for_again(
    store: Store,
) -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 3)
    old, old_chunks = document(
        "prices", ["Price list: a call costs one euro."], source="prices", fetched_at=NOW - 100
    )
    new, new_chunks = document(
        "fees", ["Fee list: a call price is shown."], source="prices", fetched_at=NOW - 10
    )
    faq, faq_chunks = document("faq", ["A call to support is free."], source="faq", fetched_at=NOW - 100)
    store.upsert(old, old_chunks, "m1", vectors[:1])
    store.upsert(new, new_chunks, "m1", vectors[1:2])
    store.upsert(faq, faq_chunks, "m1", vectors[2:])
    assert store.unvouched_since("prices", NOW - 50) == 1 and store.unvouched_since("faq", NOW - 50) == 1

    store.set_withhold("prices", 50)  # the old price list is 100 s old: withheld; faq has no policy
    assert set(search(store, "call costs price", vectors[0])) == {"fees#0", "faq#0"}
    assert set(search(store, "call costs price", vectors[0], mode="vector")) == {"fees#0", "faq#0"}
    assert search(store, "price list", None, mode="keyword") == ["fees#0"]
    at = store.search(
        "price list", None, k=5, partitions=None, mode="keyword", candidates=50, rrf_k=60, now=NOW - 60
    )
    assert {h.doc_id for h in at} == {"prices", "fees"}  # 40 s old then: served

    store.vouch("prices", ["prices", "not-indexed"], NOW - 5)  # a sync read it unchanged
    assert store.unvouched_since("prices", NOW - 50) == 0
    assert set(search(store, "price list", None, mode="keyword")) == {"prices#0", "fees#0"}
    assert search(store, "x", vectors[0], mode="vector", k=1) == ["prices#0"]

    store.set_withhold("prices", None)
    store.vouch("faq", ["faq"], 0.0)  # another source's vouch moves only its own documents
    store.vouch("prices", ["prices"], 0.0)
    assert store.unvouched_since("prices", NOW - 50) == 1
    assert search(store, "x", vectors[0], mode="vector", k=1) == ["prices#0"]  # no policy: served


def test_a_partition_filter_returns_k_even_when_another_partition_dominates(store: Store) -> None:
    rng = np.random.default_rng(7)
    query = unit(rng, 1)[0]
    for d in range(20):  # 2000 chunks right around the query, in partition "big"
        doc, chunks = document(f"big{d}", [f"big chunk {d} {i}" for i in range(100)], partition="big")
        store.upsert(doc, chunks, "m1", near(query, rng, 100, spread=0.05))
    small, small_chunks = document("small", [f"small chunk {i}" for i in range(6)], partition="small")
    store.upsert(small, small_chunks, "m1", near(-query, rng, 6, spread=0.5))  # far from the query
    shared, shared_chunks = document("shared", ["shared chunk"])
    store.upsert(shared, shared_chunks, "m1", near(-query, rng, 1, spread=0.5))

    hits = store.search("x", query, k=5, partitions=["small"], mode="vector", candidates=5, rrf_k=60, now=NOW)
    assert len(hits) == 5
    assert {h.partition for h in hits} <= {"small", ""}
    assert len(search(store, "x", query, k=10, partitions=["small"], mode="vector", candidates=10)) == 7

    everywhere = store.search(
        "x", query, k=5, partitions=None, mode="vector", candidates=5, rrf_k=60, now=NOW
    )
    assert {h.partition for h in everywhere} == {"big"}
    keyword = store.search(
        "chunk", None, k=5, partitions=["small"], mode="keyword", candidates=5, rrf_k=60, now=NOW
    )
    assert len(keyword) == 5 and {h.partition for h in keyword} <= {"small", ""}


def test_re_embedding_switches_the_searched_model_when_activated(store: Store) -> None:
    rng = np.random.default_rng(8)
    old = unit(rng, 4)
    doc, chunks = document("kb", [f"chunk {i}" for i in range(4)])
    store.upsert(doc, chunks, "m1", old)

    pending = store.chunks_without_vectors("m2", limit=3)
    assert [c for c, _ in pending] == ["kb#0", "kb#1", "kb#2"]
    assert pending[0][1] == f"{doc.title}\n\nchunk 0"  # what is embedded: the text under its title
    new = unit(rng, 4, dim=DIM * 2)  # another model, another size
    store.put_vectors("m2", [c for c, _ in pending], new[:3])
    assert [c for c, _ in store.chunks_without_vectors("m2", limit=10)] == ["kb#3"]
    store.put_vectors("m2", ["kb#3"], new[3:])
    assert store.chunks_without_vectors("m2", limit=10) == []

    # Until activated, the old model is searched
    assert store.active_model() == "m1"
    assert search(store, "x", old[1], mode="vector", k=1) == ["kb#1"]
    store.activate_model("m2")
    assert store.active_model() == "m2"
    assert search(store, "x", new[2], mode="vector", k=1) == ["kb#2"]
    assert len(store.chunks_without_vectors("m1", limit=10)) == 4  # the old model's vectors are gone


def test_every_committed_change_bumps_the_generation_and_reads_do_not(store: Store) -> None:
    rng = np.random.default_rng(9)
    seen = [store.generation()]

    def bumped() -> None:
        now = store.generation()
        assert now > seen[-1]
        seen.append(now)

    doc, chunks = document("g", ["one", "two"])
    store.upsert(doc, chunks, "m1", unit(rng, 2))
    bumped()
    search(store, "one", unit(rng, 1)[0])
    store.document_hashes("docs")
    store.counts()
    assert store.generation() == seen[-1]
    store.put_vectors("m2", ["g#0", "g#1"], unit(rng, 2))
    bumped()
    store.activate_model("m2")
    bumped()
    store.set_withhold("docs", 60.0)
    bumped()
    store.vouch("docs", ["g"], NOW)
    bumped()
    store.tombstone("docs", ["g"])
    bumped()


def test_searches_during_writes_never_see_a_removed_document(store: Store) -> None:
    rng = np.random.default_rng(10)
    query = unit(rng, 1)[0]
    removed: set[str] = set()
    removed_lock = threading.Lock()
    errors: list[BaseException] = []
    done = threading.Event()
    searches = [0]

    def write() -> None:
        try:
            for i in range(60):
                doc, chunks = document(f"d{i}", [f"policy text number {i}", f"more policy {i}"])
                store.upsert(doc, chunks, "m1", near(query, rng, 2, spread=0.3))
                if i % 2:
                    store.tombstone("docs", [f"d{i - 1}"])
                    with removed_lock:
                        removed.add(f"d{i - 1}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                with removed_lock:
                    gone = set(removed)  # removed before this search began
                hits = store.search(
                    "policy", query, k=10, partitions=None, mode="hybrid", candidates=20, rrf_k=60, now=NOW
                )
                served = {h.doc_id for h in hits}
                assert not served & gone, f"removed documents served: {served & gone}"
                searches[0] += 1
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writer = threading.Thread(target=write)
    for t in (*readers, writer):
        t.start()
    for t in (writer, *readers):
        t.join(timeout=120)
    assert not errors, errors
    assert searches[0] > 0
    final = {
        h.doc_id
        for h in store.search(
            "policy", query, k=100, partitions=None, mode="hybrid", candidates=100, rrf_k=60, now=NOW
        )
    }
    assert final == {f"d{i}" for i in range(1, 60, 2)}
    assert store.counts()["docs"].model_dump() == {"documents": 30, "chunks": 60}


def test_a_filtered_keyword_search_returns_k_even_when_filtered_chunks_rank_first(store: Store) -> None:
    rng = np.random.default_rng(11)
    for d in range(5):  # 500 chunks that BM25 ranks above every other: the word, three times, in short text
        doc, chunks = document(
            f"big{d}", [f"tariff tariff tariff {d} {i}" for i in range(100)], partition="big"
        )
        store.upsert(doc, chunks, "m1", unit(rng, 100))
    expired, expired_chunks = document("old", [f"tariff tariff {i}" for i in range(50)], source="old")
    store.upsert(expired, expired_chunks, "m1", unit(rng, 50))
    store.set_withhold("old", 60.0)  # its chunks were vouched for at 1.0: withheld
    small, small_chunks = document(
        "small",
        [f"the {i} tariff is listed in a long paragraph of other words" for i in range(6)],
        partition="small",
    )
    store.upsert(small, small_chunks, "m1", unit(rng, 6))

    hits = store.search(
        "tariff", None, k=5, partitions=["small"], mode="keyword", candidates=5, rrf_k=60, now=NOW
    )

    assert len(hits) == 5 and {h.doc_id for h in hits} == {"small"}
    everywhere = store.search(
        "tariff", None, k=5, partitions=None, mode="keyword", candidates=5, rrf_k=60, now=NOW
    )
    assert {h.partition for h in everywhere} == {"big"}
