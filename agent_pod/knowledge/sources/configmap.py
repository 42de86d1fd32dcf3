"""A ConfigMap source: its mounted volume, one file per key. The kubelet's ``..data`` and timestamped
entries are not keys. A missing or empty ConfigMap, or a listed key it lacks, is an error and never a
deletion: the mount is ``optional``, so a deleted or mistyped ConfigMap shows up as an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

from ..spec import ConfigMapSource, SourceSpec
from .fetched import Fetched, Refused, document
from .text import extract, read_file

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def fetch_config_map(source: SourceSpec, spec: ConfigMapSource, directory: Path, now: float) -> Fetched:
    """Blocking (file reads): run in a thread."""
    fetched = Fetched()
    try:
        present = sorted(p.name for p in directory.iterdir() if not p.name.startswith("..") and p.is_file())
    except OSError:
        present = []
    if not present:
        fetched.complete = False
        fetched.error("NotFound", f"ConfigMap {spec.name} is missing or has no keys", now)
        return fetched
    for key in spec.keys or present:
        doc_id = f"{source.name}/{key}"
        if not _KEY.match(key) or key.startswith(".."):
            fetched.unreadable(doc_id, "Malformed", f"{key!r} is not a ConfigMap key", now)
        elif key not in present:
            fetched.unreadable(doc_id, "NotFound", f"ConfigMap {spec.name} has no key {key}", now)
        else:
            try:
                text, title = extract(read_file(directory / key, source.max_document_bytes), key)
            except Refused as refused:
                fetched.refuse(doc_id, refused, now)
                continue
            except OSError as exc:
                fetched.unreadable(doc_id, "Unreadable", str(exc), now)
                continue
            uri = f"configmap://{spec.name}/{key}"
            fetched.documents.append(document(source.name, source.partition, key, uri, text, title, now))
    return fetched
