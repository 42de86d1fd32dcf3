"""Running a knowledge server process: its store, embedder and ingestor built from the config file, the
HTTP API and the metrics endpoint on their ports, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from ..transports.http import build_metrics_app, serve
from . import paths
from .server import KnowledgeServer
from .sources.mounts import Mounts, read_secret
from .spec import KnowledgeBaseConfig, StoreSpec
from .store import Store

log = logging.getLogger(__name__)

SQLITE_FILE = "kb.sqlite"


def store_opener(spec: StoreSpec, kb: str, store_dir: Path, secrets_dir: Path) -> Store:
    """The configured store, opened (blocking: the server calls it from a thread)."""
    if spec.type == "pgvector":
        from .pgvector_store import PgvectorStore

        assert spec.pgvector is not None  # the spec's validation requires it
        ref = spec.pgvector.dsn_secret_ref
        dsn = read_secret(secrets_dir, ref.name, ref.key)
        return PgvectorStore(
            dsn, f"{spec.pgvector.table_prefix}_{kb.replace('-', '_')}", spec.pgvector.keyword_index
        )
    from .sqlite_store import SqliteStore

    store_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(store_dir / SQLITE_FILE)


def build_server(config: KnowledgeBaseConfig, mounts: Mounts, pod_name: str) -> KnowledgeServer:
    """The server of ``config`` with its pod layout under ``mounts`` (the pod's paths, or a local root)."""
    from .embedder import embedder_from_spec
    from .ingest import Ingestor

    embedder = embedder_from_spec(config.spec.embedding, mounts.secrets)
    store_dir = mounts.root / paths.STORE.relative_to(paths.ROOT)
    return KnowledgeServer(
        config,
        lambda: store_opener(config.spec.store, config.name, store_dir, mounts.secrets),
        embedder,
        lambda store: Ingestor(config.name, store, embedder, mounts=mounts),
        pod_name=pod_name,
    )


async def run(server: KnowledgeServer, host: str, http_port: int, metrics_port: int) -> int:
    """Serve until SIGTERM or SIGINT; prints the bound ports (0: any free port) once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http, http_port = await serve(server.app(), host, http_port)
    metrics, metrics_port = await serve(build_metrics_app(), host, metrics_port)
    print(f"knowledge server {server.kb} listening: http {http_port} metrics {metrics_port}", flush=True)
    starting = loop.create_task(server.start(), name="kb-start")
    try:
        await stop.wait()
    finally:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await server.stop()
        await http.cleanup()
        await metrics.cleanup()
    log.info("knowledge server %s stopped", server.kb)
    return 0
