"""Embedding models: texts in, unit float32 rows out. Blocking (CPU or network): the knowledge server calls
them from worker threads.

The model id names the provider, the model and its size, so a change of any of them is a change of model
for the store (a re-embed), never a mix of vector spaces.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from . import paths
from .sources.mounts import read_secret
from .spec import EmbeddingSpec

log = logging.getLogger(__name__)

OPENAI_TIMEOUT_SECONDS = 30.0
OPENAI_MAX_RETRIES = 2


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """What the store records the vectors under: provider, model and size."""

    @property
    def dim(self) -> int:
        """The vectors' size."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-norm float32 row per text, in order ((0, dim) for no texts)."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (all-zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


_WORDLLAMA_MODEL = re.compile(r"^(?P<config>[a-z0-9_]+?)_(?P<dim>\d+)$")


class WordLlamaEmbedder:
    """wordllama: a static embedding model whose weights ship in its wheel (offline; ~0.05 ms a query).
    ``model`` is ``<config>_<dim>`` (l2_supercat_256); ``dimensions`` truncates (Matryoshka: 64, 128...)."""

    def __init__(self, model: str, dimensions: int | None = None, batch_size: int = 64) -> None:
        import wordllama  # heavy: only where a base embeds with it

        match = _WORDLLAMA_MODEL.match(model)
        if match is None:
            raise ValueError(f"wordllama model {model!r} is not <config>_<dimensions> (e.g. l2_supercat_256)")
        self._model = model
        self._batch_size = batch_size
        # Offline: the loader looks for the tokenizer in the wrong folder, then asks huggingface.co
        self._wl = wordllama.WordLlama.load(
            config=match["config"],
            cache_dir=Path(wordllama.__file__).parent,
            disable_download=True,
            dim=int(match["dim"]),
            trunc_dim=dimensions,
        )
        self._dim = dimensions or int(match["dim"])
        self._id = f"wordllama/{model}" + (f"@{dimensions}" if dimensions else "")

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return unit_rows(self._wl.embed(texts, norm=True, batch_size=self._batch_size))


class OpenAIEmbedder:
    """Any OpenAI-compatible /v1/embeddings endpoint (the openai SDK), ``batch_size`` texts a request."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str = "",
        dimensions: int | None = None,
        batch_size: int = 64,
        timeout: float = OPENAI_TIMEOUT_SECONDS,
    ) -> None:
        import openai

        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=OPENAI_MAX_RETRIES
        )
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._dim = dimensions
        self._id = f"openai/{model}" + (f"@{dimensions}" if dimensions else "")

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        """The requested size, else learnt from the endpoint (one probe request, once)."""
        if self._dim is None:
            self._dim = int(self.embed(["dimensions"]).shape[1])
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[np.ndarray] = []
        for batch in batches(texts, self._batch_size):
            # The API refuses empty strings; a blank text embeds as a space
            inputs = [t if t.strip() else " " for t in batch]
            if self._dimensions is None:
                response = self._client.embeddings.create(model=self._model, input=inputs)
            else:
                response = self._client.embeddings.create(
                    model=self._model, input=inputs, dimensions=self._dimensions
                )
            ordered = sorted(response.data, key=lambda d: d.index)
            rows.append(np.asarray([d.embedding for d in ordered], dtype=np.float32))
        vectors = unit_rows(np.concatenate(rows))
        self._dim = vectors.shape[1]
        return vectors


def embedder_from_spec(spec: EmbeddingSpec, secrets: Path = Path(paths.SECRETS)) -> Embedder:
    """The base's embedder; an OpenAI key comes from the mounted Secret (``secrets``/<name>/<key>)."""
    if spec.provider == "wordllama":
        return WordLlamaEmbedder(spec.model, spec.dimensions, spec.batch_size)
    ref = spec.credentials_secret_ref
    api_key = read_secret(secrets, ref.name, ref.key) if ref else ""
    return OpenAIEmbedder(
        spec.model,
        api_key=api_key or "none",  # a local endpoint may want none; the SDK insists on one
        base_url=spec.base_url,
        dimensions=spec.dimensions,
        batch_size=spec.batch_size,
    )
