"""Knowledge store search latency and insert throughput, on both stores, at two sizes.

Synthetic chunks (random sentences of words from wordllama's own vocabulary, 10 chunks a document, four
partitions and the shared one) are embedded with the default model (wordllama l2_supercat_256) and
upserted document by document; then sequential queries (random 6-word sentences) are embedded and searched:
hybrid, k=5, 50 candidates a ranking, half of them filtered to a partition. Latency is embed + search,
per query, in the calling thread (what the knowledge server's worker thread does). PostgreSQL is the
tests' loopback server (fsync off: insert numbers are an upper bound for a durable server); "pgvector" ranks
keywords on a RUM index when the server has the extension, "pgvector-gin" on GIN as a server without it.

Then half the documents are removed and the store is compacted (VACUUM): seconds and bytes before/after.

    python -m bench.knowledge_store [--sizes 10000,100000] [--stores sqlite,pgvector,pgvector-gin]
                                    [--queries 500] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from agent_pod.knowledge.embedder import WordLlamaEmbedder
from agent_pod.knowledge.models import Chunk, Document
from agent_pod.knowledge.spec import DEFAULT_EMBEDDING_MODEL, SearchSpec
from agent_pod.knowledge.sqlite_store import SqliteStore
from agent_pod.knowledge.store import Store
from bench.report import percentile, print_records, write_json

CHUNKS_PER_DOCUMENT = 10
PARTITIONS = ["", "eu", "us", "apac", "latam"]


def vocabulary() -> np.ndarray:
    """Plain lower-case words the model knows: its tokenizer's whole-word pieces (in the wheel). An array:
    rng.choice copies a list into one on every call (minutes for a 100k-chunk corpus), same draws."""
    import wordllama

    config = Path(wordllama.__file__).parent / "tokenizers" / "l2_supercat_tokenizer_config.json"
    pieces = json.loads(config.read_text())["model"]["vocab"]
    words = {p[1:] for p in pieces if p.startswith("▁") and p[1:].isascii() and p[1:].isalpha()}
    return np.array(sorted(w for w in words if w.islower() and 3 <= len(w) <= 10))


def sentences(rng: np.random.Generator, words: np.ndarray, n: int, low: int, high: int) -> list[str]:
    lengths = rng.integers(low, high + 1, size=n)
    return [" ".join(rng.choice(words, size=int(k))) for k in lengths]


def corpus(
    rng: np.random.Generator, words: np.ndarray, first_doc: int, chunks: int
) -> Iterator[tuple[Document, list[Chunk]]]:
    for d in range(first_doc, first_doc + chunks // CHUNKS_PER_DOCUMENT):
        texts = sentences(rng, words, CHUNKS_PER_DOCUMENT, 20, 40)
        body = "\n\n".join(texts)
        doc = Document(
            doc_id=f"doc-{d}",
            source=f"source-{d % 2}",
            partition=PARTITIONS[d % len(PARTITIONS)],
            uri=f"file:///docs/{d}.txt",
            title=f"Document {d}",
            text=body,
            content_hash=hashlib.sha256(body.encode()).hexdigest(),
            fetched_at=time.time(),
        )
        offset, pieces = 0, []
        for i, text in enumerate(texts):
            chunk_id = f"{doc.doc_id}#{i}"
            end = offset + len(text)
            pieces.append(
                Chunk(chunk_id=chunk_id, doc_id=doc.doc_id, ordinal=i, text=text, start=offset, end=end)
            )
            offset += len(text) + 2
        yield doc, pieces


@contextmanager
def open_store(kind: str) -> Iterator[Store]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vf-kb-bench-") as tmp:
            store = SqliteStore(Path(tmp) / "index.sqlite")
            try:
                yield store
            finally:
                store.close()
        return
    from agent_pod.knowledge.pgvector_store import PgvectorStore
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        pg = PgvectorStore(
            server.create_database(), keyword_index="gin" if kind == "pgvector-gin" else "auto"
        )
        try:
            yield pg
        finally:
            pg.close()
    finally:
        server.close()


def fill(
    store: Store, embedder: WordLlamaEmbedder, docs: list[tuple[Document, list[Chunk]]]
) -> dict[str, float]:
    """Embeds and upserts the documents; the seconds of each."""
    embed_s = insert_s = 0.0
    for doc, chunks in docs:
        t0 = time.perf_counter()
        vectors = embedder.embed([c.text for c in chunks])
        t1 = time.perf_counter()
        store.upsert(doc, chunks, embedder.model_id, vectors)
        insert_s += time.perf_counter() - t1
        embed_s += t1 - t0
    return {"embed": embed_s, "insert": insert_s}


def measure(
    store: Store, embedder: WordLlamaEmbedder, queries: list[str], rng: np.random.Generator
) -> list[float]:
    """Milliseconds of embed + hybrid search per query; half of them filtered to one partition."""
    took = []
    for i, query in enumerate(queries):
        partitions = [str(rng.choice(PARTITIONS[1:]))] if i % 2 else None
        t0 = time.perf_counter()
        vector = embedder.embed([query])[0]
        hits = store.search(
            query,
            vector,
            k=5,
            partitions=partitions,
            mode="hybrid",
            candidates=50,
            rrf_k=SearchSpec().rrf_k,
            keyword_weight=SearchSpec().keyword_weight,
            now=time.time(),
        )
        took.append((time.perf_counter() - t0) * 1000)
        if len(hits) != 5:
            raise RuntimeError(f"{len(hits)} hits for {query!r} ({partitions})")
    return took


def compaction(store: Store, kind: str, chunks: int) -> dict[str, Any]:
    """Half the documents (one of the two sources) removed, then the store compacted."""
    gone = [doc for doc in store.document_hashes("source-1")]
    started = time.perf_counter()
    store.tombstone("source-1", gone)
    removed = time.perf_counter() - started
    result = store.compact(0.0)
    return {
        "store": kind,
        "chunks": chunks,
        "documents removed": len(gone),
        "remove s": removed,
        "compaction s": result.seconds,
        "MB before": result.bytes_before / 1e6,
        "MB after": result.bytes_after / 1e6,
    }


def run(sizes: list[int], stores: list[str], n_queries: int) -> dict[str, list[dict[str, Any]]]:
    embedder = WordLlamaEmbedder(DEFAULT_EMBEDDING_MODEL)
    words = vocabulary()
    rows, compactions = [], []
    for kind in stores:
        rng = np.random.default_rng(1)
        with open_store(kind) as store:
            have = 0
            for size in sorted(sizes):
                docs = list(corpus(rng, words, have // CHUNKS_PER_DOCUMENT, size - have))
                seconds = fill(store, embedder, docs)
                added = size - have
                have = size
                measure(store, embedder, sentences(rng, words, 20, 6, 6), rng)  # warm: index load, caches
                took = measure(store, embedder, sentences(rng, words, n_queries, 6, 6), rng)
                rows.append(
                    {
                        "store": kind,
                        "chunks": size,
                        "search p50 ms": percentile(took, 0.5),
                        "search p99 ms": percentile(took, 0.99),
                        "insert chunks/s": added / seconds["insert"],
                        "embed chunks/s": added / seconds["embed"],
                        "index MB": store.index_bytes() / 1e6,
                    }
                )
            compactions.append(compaction(store, kind, have))
    return {"search": rows, "compaction": compactions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="chunk counts, comma-separated")
    parser.add_argument("--stores", default="sqlite,pgvector", help="stores, comma-separated")
    parser.add_argument("--queries", type=int, default=500, help="queries per store and size")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    result = run([int(s) for s in args.sizes.split(",")], args.stores.split(","), args.queries)
    print_records(result["search"])
    print()
    print_records(result["compaction"])
    write_json(args.json, result)


if __name__ == "__main__":
    main()
