"""Documents, chunks and unit vectors for the store tests (vectors are chosen, not embedded, so a test
decides which chunk is nearest)."""

from __future__ import annotations

import hashlib

import numpy as np

from agent_pod.knowledge.models import Chunk, Document

DIM = 64


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def near(direction: np.ndarray, rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    """n unit vectors around ``direction`` (smaller spread: nearer)."""
    v = direction[None, :] + spread * unit(rng, n, direction.shape[0])
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def document(
    doc_id: str, texts: list[str], *, source: str = "docs", partition: str = "", fetched_at: float = 1.0
) -> tuple[Document, list[Chunk]]:
    body = "\n\n".join(texts)
    doc = Document(
        doc_id=doc_id,
        source=source,
        partition=partition,
        uri=f"file:///{doc_id}",
        title=doc_id.title(),
        text=body,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
        fetched_at=fetched_at,
    )
    chunks, offset = [], 0
    for i, text in enumerate(texts):
        chunks.append(
            Chunk(
                chunk_id=f"{doc_id}#{i}",
                doc_id=doc_id,
                ordinal=i,
                text=text,
                start=offset,
                end=offset + len(text),
            )
        )
        offset += len(text) + 2
    return doc, chunks
