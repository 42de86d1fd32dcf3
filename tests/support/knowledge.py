"""A real knowledge server in the test's process: the sqlite store, the offline embedder and the
ingestor of a configMap source whose keys are files under a tmp root, served on loopback."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent_pod.knowledge import paths
from agent_pod.knowledge.embedder import WordLlamaEmbedder
from agent_pod.knowledge.ingest import Ingestor
from agent_pod.knowledge.server import KnowledgeServer
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import DEFAULT_EMBEDDING_MODEL, KnowledgeBaseConfig
from agent_pod.knowledge.sqlite_store import SqliteStore
from agent_pod.transports.http import serve
from tests.support.wait import async_wait_for

SOURCE = "docs"


@functools.cache
def embedder() -> WordLlamaEmbedder:
    """The offline default model, loaded once per test process."""
    return WordLlamaEmbedder(DEFAULT_EMBEDDING_MODEL)


def write_docs(root: Path, docs: dict[str, str | None]) -> None:
    """The configMap source's keys (None removes a key)."""
    directory = root / paths.config_map_dir(SOURCE).relative_to(paths.ROOT)
    directory.mkdir(parents=True, exist_ok=True)
    for key, text in docs.items():
        if text is None:
            (directory / key).unlink(missing_ok=True)
        else:
            (directory / key).write_text(text)


@asynccontextmanager
async def knowledge_server(
    root: Path, docs: dict[str, str | None], name: str = "faq", **source: Any
) -> AsyncIterator[tuple[KnowledgeServer, str]]:
    """The server (first sync done) and its base URL."""
    write_docs(root, docs)
    config = KnowledgeBaseConfig.model_validate(
        {"name": name, "spec": {"sources": [{"name": SOURCE, "configMap": {"name": "faq-docs"}, **source}]}}
    )
    mounts = Mounts(root=root, secrets=root / "secrets")
    (root / "store").mkdir(parents=True, exist_ok=True)
    server = KnowledgeServer(
        config,
        lambda: SqliteStore(root / "store" / "kb.sqlite"),
        embedder(),
        lambda store: Ingestor(name, store, embedder(), mounts=mounts),
        pod_name=f"kb-{name}-0",
    )
    await server.start()
    runner, port = await serve(server.app(), "127.0.0.1", 0)
    try:

        async def synced() -> bool:
            return server.sources[SOURCE].status.last_success is not None

        await async_wait_for(synced, timeout=60, what="the first sync")
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await server.stop()
