"""`voicefleet knowledge serve`: run the knowledge server of one KnowledgeBase (its StatefulSet's
command; locally, any config file and store directory)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from ..knowledge import paths
from ..logs import setup_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("knowledge", help="knowledge bases")
    sub = p.add_subparsers(dest="knowledge_command", required=True)
    s = sub.add_parser("serve", help="ingest a KnowledgeBase's sources and answer searches")
    s.add_argument("--config", type=Path, default=Path(paths.CONFIG_FILE), help="knowledgebase.json")
    s.add_argument("--root", type=Path, default=Path(paths.ROOT), help="the store and source volumes' root")
    s.add_argument("--secrets-dir", type=Path, default=Path(paths.SECRETS), help="mounted Secrets")
    s.add_argument("--host", default="0.0.0.0", help="bind host")
    s.add_argument("--http-port", type=int, default=paths.HTTP_PORT, help="API port (0: any free port)")
    s.add_argument("--metrics-port", type=int, default=paths.METRICS_PORT, help="Prometheus port (0: any)")
    s.add_argument("--log-format", choices=("json", "text"), default=os.environ.get("VOICEFLEET_LOG_FORMAT"))
    s.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    # Heavy imports (numpy, the embedding model) only for this command.
    from ..knowledge.serve import build_server, run
    from ..knowledge.sources.mounts import Mounts
    from ..knowledge.spec import KnowledgeBaseConfig

    setup_logging(args.log_format or "json")
    config = KnowledgeBaseConfig.model_validate_json(args.config.read_bytes())
    pod_name = os.environ.get("VOICEFLEET_POD_NAME", "")
    server = build_server(config, Mounts(root=args.root, secrets=args.secrets_dir), pod_name)
    return asyncio.run(run(server, args.host, args.http_port, args.metrics_port))
