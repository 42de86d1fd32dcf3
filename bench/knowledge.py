"""Knowledge base quality and ingestion: recall of the fixture corpus and documents/s through the ingestor.

The corpus (bench/data/knowledge_corpus.yaml) is the help centre of a fictional carrier, written here:
48 articles whose vocabulary overlaps on purpose, and 96 questions phrased as a caller would say them,
each with the article that answers it. The articles are ingested the way a knowledge server does it
(files source -> ingestor: extraction, chunking, offline embedding, the store), alone and among
synthetic distractor chunks; each question is searched in each mode and recall@1 / recall@5 count the
questions whose article is the first hit / among the first five. Ingestion throughput is the ingestor's
first sync of a files source of synthetic documents (10 paragraphs each), on both stores.

    python -m bench.knowledge [--stores sqlite,pgvector] [--distractors 0,10000] [--documents 1000]
                              [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from agent_pod.knowledge.embedder import WordLlamaEmbedder
from agent_pod.knowledge.ingest import Ingestor
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import DEFAULT_EMBEDDING_MODEL, SearchSpec, SourceSpec
from agent_pod.knowledge.store import Store
from bench.knowledge_store import CHUNKS_PER_DOCUMENT, corpus, fill, open_store, sentences, vocabulary
from bench.report import print_records, write_json

CORPUS = Path(__file__).parent / "data" / "knowledge_corpus.yaml"
SOURCE = "help"
Mode = Literal["hybrid", "vector", "keyword"]
# (label, mode, keyword weight): the default hybrid, hybrid with both rankings weighted alike, one ranking.
MODES: tuple[tuple[str, Mode, float], ...] = (
    ("hybrid", "hybrid", SearchSpec().keyword_weight),
    ("hybrid, equal weights", "hybrid", 1.0),
    ("vector", "vector", 1.0),
    ("keyword", "keyword", 1.0),
)


def load_corpus() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    data = yaml.safe_load(CORPUS.read_text())
    return data["documents"], data["questions"]


def files_source() -> SourceSpec:
    return SourceSpec.model_validate({"name": SOURCE, "files": {"glob": "**/*.md"}})


def write_articles(directory: Path, articles: list[dict[str, str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for article in articles:
        (directory / f"{article['id']}.md").write_text(f"# {article['title']}\n\n{article['text']}\n")


def ingest(store: Store, embedder: WordLlamaEmbedder, root: Path) -> tuple[int, float]:
    """The files source under ``root`` synced once into ``store``: (documents, seconds)."""
    ingestor = Ingestor("bench", store, embedder, mounts=Mounts(root=root))
    start = time.perf_counter()
    status = asyncio.run(ingestor.sync(files_source(), time.time()))
    seconds = time.perf_counter() - start
    if status.errors:
        raise RuntimeError(f"ingestion errors: {status.errors}")
    return status.documents, seconds


def recall(
    store: Store,
    embedder: WordLlamaEmbedder,
    questions: list[dict[str, str]],
    mode: Mode,
    keyword_weight: float,
) -> tuple[float, float]:
    """recall@1 and recall@5 of the questions' articles."""
    first = top5 = 0
    for question in questions:
        vector = embedder.embed([question["q"]])[0] if mode != "keyword" else None
        hits = store.search(
            question["q"],
            vector,
            k=5,
            partitions=None,
            mode=mode,
            candidates=50,
            rrf_k=SearchSpec().rrf_k,
            keyword_weight=keyword_weight,
            now=time.time(),
        )
        docs = [Path(hit.doc_id).stem for hit in hits]
        first += bool(docs) and docs[0] == question["doc"]
        top5 += question["doc"] in docs
    return first / len(questions), top5 / len(questions)


def quality(stores: list[str], distractors: list[int]) -> list[dict[str, Any]]:
    embedder = WordLlamaEmbedder(DEFAULT_EMBEDDING_MODEL)
    articles, questions = load_corpus()
    words = vocabulary()
    rows = []
    for kind in stores:
        for extra in distractors:
            with open_store(kind) as store, tempfile.TemporaryDirectory(prefix="vf-kb-corpus-") as tmp:
                fill(store, embedder, list(corpus(np.random.default_rng(2), words, 0, extra)))
                root = Path(tmp)
                write_articles(Mounts(root=root).files_dir(SOURCE, claim=False), articles)
                ingest(store, embedder, root)
                for label, mode, weight in MODES:
                    at1, at5 = recall(store, embedder, questions, mode, weight)
                    rows.append(
                        {
                            "store": kind,
                            "distractor chunks": extra,
                            "mode": label,
                            "questions": len(questions),
                            "recall@1": at1,
                            "recall@5": at5,
                        }
                    )
    return rows


def throughput(stores: list[str], documents: int) -> list[dict[str, Any]]:
    embedder = WordLlamaEmbedder(DEFAULT_EMBEDDING_MODEL)
    words = vocabulary()
    rows = []
    for kind in stores:
        with open_store(kind) as store, tempfile.TemporaryDirectory(prefix="vf-kb-docs-") as tmp:
            root = Path(tmp)
            directory = Mounts(root=root).files_dir(SOURCE, claim=False)
            directory.mkdir(parents=True)
            rng = np.random.default_rng(3)
            for n in range(documents):
                body = "\n\n".join(sentences(rng, words, CHUNKS_PER_DOCUMENT, 20, 40))
                (directory / f"doc-{n}.md").write_text(f"# Document {n}\n\n{body}\n")
            indexed, seconds = ingest(store, embedder, root)
            rows.append(
                {
                    "store": kind,
                    "documents": indexed,
                    "chunks": sum(c.chunks for c in store.counts().values()),
                    "seconds": seconds,
                    "documents/s": indexed / seconds,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,pgvector", help="stores, comma-separated")
    parser.add_argument("--distractors", default="0,10000", help="synthetic chunks beside the corpus")
    parser.add_argument("--documents", type=int, default=1000, help="documents of the throughput run")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    stores = args.stores.split(",")
    result = {
        "recall": quality(stores, [int(n) for n in args.distractors.split(",")]),
        "ingestion": throughput(stores, args.documents),
    }
    print_records(result["recall"])
    print()
    print_records(result["ingestion"])
    write_json(args.json, result)


if __name__ == "__main__":
    main()
