"""Provider credentials: mounted Secret files first, then the environment.

The operator mounts every ``credentialsSecretRef`` at
``$VOICEFLEET_CREDENTIALS_DIR/<secret name>/<key>``. Keys are never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import SecretKeyRef

DEFAULT_DIR = "/etc/voicefleet/credentials"


def credentials_dir() -> Path:
    return Path(os.environ.get("VOICEFLEET_CREDENTIALS_DIR", DEFAULT_DIR))


def resolve_credential(ref: SecretKeyRef | None, env_var: str) -> str | None:
    """The API key for a provider: the mounted secret named by ``ref``, else ``env_var``."""
    if ref is not None:
        path = credentials_dir() / ref.name / ref.key
        try:
            return path.read_text().strip() or None
        except OSError:
            return None
    return os.environ.get(env_var) or None
