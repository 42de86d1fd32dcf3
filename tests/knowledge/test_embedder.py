"""The embedders: wordllama for real (offline, its weights in the wheel) and the OpenAI SDK against the
local OpenAI wire server's /v1/embeddings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import openai
import pytest

from agent_pod.config import SecretKeyRef
from agent_pod.knowledge.embedder import OpenAIEmbedder, WordLlamaEmbedder, embedder_from_spec, unit_rows
from agent_pod.knowledge.spec import EmbeddingSpec
from tests.wire.openai_server import OpenAIServer

REFUND = "How do I get a refund for a returned product?"
RETURNS = "Refunds for returned products are paid within 14 days."
WEATHER = "Tomorrow it will rain in the mountains."


def test_unit_rows_scales_rows_and_keeps_zero_rows() -> None:
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.dtype == np.float32 and rows.flags.c_contiguous
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_wordllama_embeds_offline_into_unit_rows_where_related_texts_are_near() -> None:
    embedder = embedder_from_spec(EmbeddingSpec())
    assert isinstance(embedder, WordLlamaEmbedder)
    assert (embedder.model_id, embedder.dim) == ("wordllama/l2_supercat_256", 256)

    v = embedder.embed([REFUND, RETURNS, WEATHER])

    assert v.shape == (3, 256) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    assert embedder.embed([]).shape == (0, 256)


def test_wordllama_truncates_to_the_asked_dimensions_under_another_model_id() -> None:
    embedder = WordLlamaEmbedder("l2_supercat_256", dimensions=64)
    v = embedder.embed([REFUND, RETURNS, WEATHER])
    assert v.shape == (3, 64) and embedder.model_id == "wordllama/l2_supercat_256@64"
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_a_wordllama_model_name_without_its_size_is_refused() -> None:
    with pytest.raises(ValueError, match="config"):
        WordLlamaEmbedder("l2_supercat")


async def test_openai_embeddings_come_in_batches_in_order_with_the_key_from_the_secret(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    (tmp_path / "embed-key").mkdir()
    (tmp_path / "embed-key" / "apiKey").write_text(openai_server.api_key + "\n")
    spec = EmbeddingSpec(
        provider="openai",
        model="text-embedding-3-small",
        base_url=openai_server.base_url,
        dimensions=32,
        batch_size=2,
        credentials_secret_ref=SecretKeyRef(name="embed-key", key="apiKey"),
    )
    embedder = embedder_from_spec(spec, secrets=tmp_path)
    assert embedder.model_id == "openai/text-embedding-3-small@32" and embedder.dim == 32

    v = await asyncio.to_thread(embedder.embed, [REFUND, RETURNS, WEATHER, "   "])

    assert v.shape == (4, 32) and np.allclose(np.linalg.norm(v[:3], axis=1), 1, atol=1e-5)
    sent = [r.body for r in openai_server.requests if r.path == "/v1/embeddings"]
    assert [b["input"] for b in sent] == [[REFUND, RETURNS], [WEATHER, " "]]
    assert all(b["dimensions"] == 32 and b["model"] == "text-embedding-3-small" for b in sent)
    assert all(r.authorized for r in openai_server.requests)
    again = await asyncio.to_thread(embedder.embed, [WEATHER])
    assert np.allclose(again[0], v[2])  # in order: the third row is the third text's
    assert v[0] @ v[1] > v[0] @ v[2]  # the server's vectors share words, like a real model's


async def test_openai_embedder_learns_its_size_and_retries_a_server_error(
    openai_server: OpenAIServer,
) -> None:
    embedder = OpenAIEmbedder("m", api_key=openai_server.api_key, base_url=openai_server.base_url)
    assert await asyncio.to_thread(lambda: embedder.dim) == 64  # the server's default size
    openai_server.faults.status = 500

    v = await asyncio.to_thread(embedder.embed, [REFUND])

    assert v.shape == (1, 64)
    assert len([r for r in openai_server.requests if r.path == "/v1/embeddings"]) == 3  # probe, 500, retry


async def test_a_wrong_openai_key_fails_the_embedding(openai_server: OpenAIServer) -> None:
    embedder = OpenAIEmbedder("m", api_key="wrong", base_url=openai_server.base_url)
    with pytest.raises(openai.AuthenticationError):
        await asyncio.to_thread(embedder.embed, [REFUND])
