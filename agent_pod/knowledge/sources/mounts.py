"""Where the knowledge server finds a source's volume and Secrets: paths.py's pod layout, rebased on a
root for tests and local runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import paths


@dataclass(frozen=True)
class Mounts:
    root: Path = Path(paths.ROOT)
    secrets: Path = Path(paths.SECRETS)

    def config_map_dir(self, source: str) -> Path:
        return self.root / paths.config_map_dir(source).relative_to(paths.ROOT)

    def files_dir(self, source: str, claim: bool) -> Path:
        """A files source's claim, or the server's own store volume when it names none."""
        base = paths.files_dir(source) if claim else paths.STORE
        return self.root / base.relative_to(paths.ROOT)

    def secret_file(self, secret: str, key: str) -> Path:
        return self.secrets / paths.secret_file(secret, key).relative_to(paths.SECRETS)


def read_secret(secrets_dir: Path, name: str, key: str) -> str:
    """A mounted Secret's key (paths.secret_file); raises with the path when it is missing."""
    path = secrets_dir / name / key
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"secret {name}/{key} is not mounted at {path}: {exc}") from exc
