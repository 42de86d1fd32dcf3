"""The in-memory vector index of the SQLite store: the active model's vectors as numpy arrays.

Exact float scoring for small indexes; past ``EXACT_ROWS`` a binary (sign-bit) Hamming scan picks a pool of
candidates that is re-ranked by exact float scores (~5 ms for 100k x 256 on 2 cores, where a float GEMV is
6-20 ms). Filters (partition, document past its source's max age, removed row) mask rows before any top-k
is taken; each row keeps when its document was last vouched for, so the freshness mask is one comparison.

Readers take a snapshot (array references) under the lock and score without it; the single writer appends
rows, clears their ``live`` flag or moves their vouched time forward, and grows or compacts into new arrays,
so a snapshot never changes under a reader except for rows turning dead or fresher (the store re-reads
final rows anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

EXACT_ROWS = 20_000  # below this many rows a float GEMV is as fast as the binary scan
MIN_POOL = 256  # binary-scan candidates re-ranked exactly, at least (and 8 per result asked)


def sign_bits(vectors: np.ndarray) -> np.ndarray:
    """Rows of sign bits as uint64 words (zero-padded to a whole word)."""
    packed = np.packbits(vectors > 0, axis=-1)
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.pad(packed, [(0, 0)] * (packed.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(packed).view(np.uint64)


def _dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row scores in this thread: numpy's BLAS (OpenBLAS) spreads a GEMV of a few thousand rows over its
    threads, and on a busy 2-core machine they wait on each other (8 ms for 4000 x 256, 0.2 ms here)."""
    return np.einsum("ij,j->i", rows, query)


def _hamming(bits: np.ndarray, query_bits: np.ndarray) -> np.ndarray:
    """Bits differing from the query's, per row (a column-by-column sum: 1.5 ms faster at 100k rows than
    numpy's reduction along an axis of four words)."""
    counts = np.bitwise_count(bits ^ query_bits)
    distance = counts[:, 0].astype(np.uint16)
    for word in range(1, counts.shape[1]):
        distance += counts[:, word]
    return distance


def top_positions(
    vectors: np.ndarray, bits: np.ndarray, mask: np.ndarray, query: np.ndarray, limit: int
) -> np.ndarray:
    """Positions of the ``limit`` best rows allowed by ``mask`` (cosine on unit rows), best first."""
    allowed = int(mask.sum())
    if allowed == 0 or limit <= 0:
        return np.empty(0, dtype=np.int64)
    pool = max(MIN_POOL, 8 * limit)
    if allowed <= pool:
        candidates = np.flatnonzero(mask)
    elif len(mask) <= EXACT_ROWS:
        scores = _dot(vectors, query)
        scores[~mask] = -np.inf
        candidates = np.argpartition(-scores, min(limit, allowed) - 1)[: min(limit, allowed)]
        return candidates[np.argsort(-scores[candidates], kind="stable")]
    else:
        distance = _hamming(bits, sign_bits(query[None, :])[0])
        distance[~mask] = np.iinfo(np.uint16).max
        candidates = np.argpartition(distance, pool - 1)[:pool]
    scores = _dot(vectors[candidates], query)
    best = np.argsort(-scores, kind="stable")[:limit]
    return candidates[best]


@dataclass(frozen=True)
class Snapshot:
    generation: int
    vectors: np.ndarray
    bits: np.ndarray
    keys: np.ndarray  # the store's row id of each position
    live: np.ndarray
    vouched: np.ndarray  # Unix time each row's document was last vouched for by its source
    partitions: np.ndarray  # code of each row's partition
    sources: np.ndarray
    partition_codes: dict[str, int]
    source_codes: dict[str, int]

    def search(
        self, query: np.ndarray, limit: int, partitions: set[str] | None, fresh_since: dict[str, float]
    ) -> list[int]:
        """Keys of the best rows of the allowed partitions, best first; a row of a source in
        ``fresh_since`` only when its document was vouched for at or after that source's time."""
        mask = self.live.copy()
        if partitions is not None:
            allowed = np.zeros(len(self.partition_codes) + 1, dtype=bool)
            for name in partitions:
                if name in self.partition_codes:
                    allowed[self.partition_codes[name]] = True
            mask &= allowed[self.partitions]
        if fresh_since:
            cutoff = np.full(len(self.source_codes) + 1, -np.inf)
            for name, since in fresh_since.items():
                if name in self.source_codes:
                    cutoff[self.source_codes[name]] = since
            mask &= self.vouched >= cutoff[self.sources]
        positions = top_positions(self.vectors, self.bits, mask, query.astype(np.float32), limit)
        return [int(k) for k in self.keys[positions]]


class VectorIndex:
    def __init__(self, model: str, dim: int = 0) -> None:
        self.model = model
        self.dim = dim  # 0: set by the first rows added
        self.generation = -1
        self._lock = threading.Lock()
        self._size = 0
        self._dead = 0
        self._position: dict[int, int] = {}
        self._partition_codes: dict[str, int] = {}
        self._source_codes: dict[str, int] = {}
        self._allocate(1024)

    def _allocate(self, capacity: int) -> None:
        words = sign_bits(np.zeros((1, self.dim), dtype=np.float32)).shape[1]
        self._vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        self._bits = np.zeros((capacity, words), dtype=np.uint64)
        self._keys = np.zeros(capacity, dtype=np.int64)
        self._live = np.zeros(capacity, dtype=bool)
        self._vouched = np.zeros(capacity, dtype=np.float64)
        self._partitions = np.zeros(capacity, dtype=np.int32)
        self._sources = np.zeros(capacity, dtype=np.int32)

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self._vectors, self._bits, self._keys, self._vouched, self._partitions, self._sources)

    def __len__(self) -> int:
        return self._size - self._dead

    def _code(self, codes: dict[str, int], name: str) -> int:
        if name not in codes:
            codes[name] = len(codes)
        return codes[name]

    def add(
        self,
        keys: list[int],
        partition: str,
        source: str,
        vectors: np.ndarray,
        vouched_at: float | np.ndarray,
    ) -> None:
        """Rows of one partition and source, last vouched for at ``vouched_at`` (one time, or one per row)."""
        with self._lock:
            self._remove(keys)
            n = len(keys)
            if vectors.shape[1] != self.dim:
                if self._size:
                    raise ValueError(f"vectors of {vectors.shape[1]} dimensions in an index of {self.dim}")
                self.dim = vectors.shape[1]
                self._allocate(max(1024, n))
            if self._size + n > len(self._keys):
                self._regrow(self._size + n)
            end = self._size + n
            self._vectors[self._size : end] = vectors
            self._bits[self._size : end] = sign_bits(vectors)
            self._keys[self._size : end] = keys
            self._vouched[self._size : end] = vouched_at
            self._partitions[self._size : end] = self._code(self._partition_codes, partition)
            self._sources[self._size : end] = self._code(self._source_codes, source)
            self._live[self._size : end] = True
            for offset, key in enumerate(keys):
                self._position[key] = self._size + offset
            self._size = end

    def remove(self, keys: Iterable[int]) -> None:
        with self._lock:
            self._remove(keys)
            if self._dead > 1024 and self._dead * 2 > self._size:
                self._regrow(len(self))

    def vouch(self, keys: Iterable[int], at: float) -> None:
        """The rows' documents were vouched for at ``at``."""
        with self._lock:
            for key in keys:
                position = self._position.get(key)
                if position is not None:
                    self._vouched[position] = at

    def _remove(self, keys: Iterable[int]) -> None:
        for key in keys:
            position = self._position.pop(key, None)
            if position is not None:
                self._live[position] = False
                self._dead += 1

    def _regrow(self, needed: int) -> None:
        """New arrays (snapshots keep the old ones): the live rows, packed, with room to grow."""
        live = np.flatnonzero(self._live[: self._size])
        old = self._arrays()
        self._allocate(max(1024, 2 * needed))
        for new, previous in zip(self._arrays(), old, strict=True):
            new[: len(live)] = previous[live]
        self._live[: len(live)] = True
        self._size, self._dead = len(live), 0
        self._position = {int(key): i for i, key in enumerate(self._keys[: self._size])}

    def set_generation(self, generation: int) -> None:
        with self._lock:
            self.generation = generation

    def snapshot(self) -> Snapshot:
        with self._lock:
            n = self._size
            return Snapshot(
                generation=self.generation,
                vectors=self._vectors[:n],
                bits=self._bits[:n],
                keys=self._keys[:n],
                live=self._live[:n],
                vouched=self._vouched[:n],
                partitions=self._partitions[:n],
                sources=self._sources[:n],
                partition_codes=dict(self._partition_codes),
                source_codes=dict(self._source_codes),
            )
