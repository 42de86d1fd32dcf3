"""What fetching a source gives the ingestor: its documents, the ones it still has but did not (re)read,
and per-document errors; plus the refusal every source raises for content it will not index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..models import Document, SourceError


class Refused(Exception):
    """A document that is not indexed: its reason is a SourceError reason (TooLarge, NotText, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Validator:
    """How a source tells an unchanged document without reading it again: an HTTP ETag and Last-Modified,
    an S3 object's ETag, a file's size and mtime."""

    etag: str = ""
    last_modified: str = ""


@dataclass
class Fetched:
    documents: list[Document] = field(default_factory=list)
    # Doc ids the source still has but that were not read: unchanged (conditional fetch), refused or
    # unreadable this time. Their indexed versions stay.
    kept: set[str] = field(default_factory=set)
    # The kept ones the source confirmed unchanged (conditional fetch): vouched for like a read document.
    confirmed: set[str] = field(default_factory=set)
    errors: list[SourceError] = field(default_factory=list)
    # The source was listed and read in full, so an indexed document missing from it is gone from the
    # source. False after any failure to list or read: then nothing is tombstoned.
    complete: bool = True
    validators: dict[str, Validator] = field(default_factory=dict)

    def error(self, reason: str, message: str, now: float, document: str = "") -> None:
        self.errors.append(SourceError(reason=reason, message=message, document=document, at=now))

    def confirm(self, doc_id: str) -> None:
        """A document the source says is unchanged since it was read: kept, and vouched for."""
        self.kept.add(doc_id)
        self.confirmed.add(doc_id)

    def refuse(self, doc_id: str, refused: Refused, now: float) -> None:
        self.kept.add(doc_id)
        self.error(refused.reason, refused.message, now, doc_id)

    def unreadable(self, doc_id: str, reason: str, message: str, now: float) -> None:
        """A document the source lists but could not deliver: kept, and nothing is tombstoned."""
        self.kept.add(doc_id)
        self.complete = False
        self.error(reason, message, now, doc_id)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def document(source: str, partition: str, key: str, uri: str, text: str, title: str, now: float) -> Document:
    """A fetched document, ``source/key`` its id."""
    return Document(
        doc_id=f"{source}/{key}",
        source=source,
        partition=partition,
        uri=uri,
        title=title,
        text=text,
        content_hash=content_hash(text),
        fetched_at=now,
    )
