"""Where the knowledge server finds its config, sources, secrets and store inside its pod: the operator's
render and the server share these (light: imported by the operator)."""

from __future__ import annotations

from pathlib import PurePosixPath

ROOT = PurePosixPath("/var/lib/voicefleet/kb")
CONFIG_FILE = PurePosixPath("/etc/voicefleet/kb/knowledgebase.json")  # {"name", "namespace", "spec"}
SECRETS = PurePosixPath("/etc/voicefleet/kb/secrets")
STORE = ROOT / "store"  # the sqlite file and its WAL; a PVC or an emptyDir
HTTP_PORT = 8080  # /v1/search, /v1/status, /v1/sync, /healthz, /readyz
METRICS_PORT = 9090


def resource_name(kb: str) -> str:
    """The StatefulSet, Service and ConfigMap of a KnowledgeBase."""
    return f"kb-{kb}"


def config_map_dir(source: str) -> PurePosixPath:
    """A configMap source's volume: one file per key."""
    return ROOT / "sources" / source


def files_dir(source: str) -> PurePosixPath:
    """A files source's volume (its claim, read-only)."""
    return ROOT / "files" / source


def secret_file(secret: str, key: str) -> PurePosixPath:
    """A Secret's key, mounted read-only."""
    return SECRETS / secret / key
