"""A files source: the files under a directory of a mounted volume that match its glob. A file whose size
and mtime are those of its indexed version is not read again."""

from __future__ import annotations

from pathlib import Path

from ..spec import FilesSource, SourceSpec
from .fetched import Fetched, Refused, Validator, document
from .text import extract, read_file


def fetch_files(
    source: SourceSpec, spec: FilesSource, volume: Path, validators: dict[str, Validator], now: float
) -> Fetched:
    """Blocking (directory walk and reads): run in a thread."""
    fetched = Fetched()
    try:
        base = (volume / spec.path.lstrip("/")).resolve(strict=True)
        if not base.is_relative_to(volume.resolve()) or not base.is_dir():
            raise NotADirectoryError(f"{spec.path} is not a directory of the volume")
        paths = sorted(p for p in base.glob(spec.glob) if p.is_file())
    except (ValueError, NotImplementedError) as exc:  # pathlib's words for a glob it cannot use
        fetched.complete = False
        fetched.error("Malformed", f"glob {spec.glob!r}: {exc}", now)
        return fetched
    except OSError as exc:
        fetched.complete = False
        fetched.error("NotFound", f"cannot list {spec.path}: {exc}", now)
        return fetched
    for path in paths:
        key = path.relative_to(base).as_posix()
        doc_id = f"{source.name}/{key}"
        if any(part.startswith("..") for part in path.relative_to(base).parts):
            continue  # the kubelet's atomic-writer entries of a projected volume
        try:
            if not path.resolve().is_relative_to(base):
                raise Refused("Malformed", "a link out of the source's directory")
            stat = path.stat()
            validator = Validator(etag=f"{stat.st_size}:{stat.st_mtime_ns}")
            if validators.get(doc_id) == validator:
                fetched.confirm(doc_id)
                continue
            text, title = extract(read_file(path, source.max_document_bytes), key)
        except Refused as refused:
            fetched.refuse(doc_id, refused, now)
            continue
        except OSError as exc:
            fetched.unreadable(doc_id, "Unreadable", str(exc), now)
            continue
        fetched.documents.append(document(source.name, source.partition, key, str(path), text, title, now))
        fetched.validators[doc_id] = validator
    return fetched
