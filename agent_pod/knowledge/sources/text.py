"""Bytes to indexable text: UTF-8 (or the declared charset) text, markdown, or HTML stripped to its text.
Binary or garbage content is refused (NotText), and reads are bounded (TooLarge) before anything big is
held in memory."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from .fetched import Refused

MAX_UNPRINTABLE_RATIO = 0.05  # control characters beyond this share of the text: not a text document
READ_BYTES = 64 * 1024
_MARKDOWN_TITLE = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "dt", "dd", "hr",
}  # fmt: skip
_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


def too_large(size: int, limit: int) -> Refused:
    return Refused("TooLarge", f"{size} bytes or more, over maxDocumentBytes {limit}")


def read_file(path: Path, limit: int) -> bytes:
    """A file's bytes, refused past ``limit`` without reading more than ``limit`` + 1 of them."""
    size = path.stat().st_size
    if size > limit:
        raise too_large(size, limit)
    with path.open("rb") as f:
        data = f.read(limit + 1)  # the file may have grown since the stat
    if len(data) > limit:
        raise too_large(len(data), limit)
    return data


def extract(data: bytes, name: str, content_type: str = "") -> tuple[str, str]:
    """(text, title) of a document's bytes; ``name`` is its file name, key or URL path."""
    if b"\x00" in data:
        raise Refused("NotText", "binary content (NUL bytes)")
    mime, _, params = content_type.partition(";")
    charset = charset_of(params)
    try:
        text = codecs.decode(data, charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise Refused("NotText", f"not {charset} text: {exc}") from None
    if text and unprintable_ratio(text) > MAX_UNPRINTABLE_RATIO:
        raise Refused("NotText", "mostly non-printable characters")
    suffix = PurePosixPath(name).suffix.lower()
    if "html" in mime.lower() or suffix in (".html", ".htm"):
        text, title = html_text(text)
    else:
        match = _MARKDOWN_TITLE.search(text) if suffix in (".md", ".markdown") else None
        title = match.group(1) if match else ""
    if not text.strip():
        raise Refused("Empty", "no text")
    return text, title or PurePosixPath(name).name


def charset_of(params: str) -> str:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value.strip('"'):
            return value.strip('"').lower()
    return "utf-8-sig"  # a byte order mark is not text


def unprintable_ratio(text: str) -> float:
    bad = sum(1 for c in text if not c.isprintable() and c not in "\n\r\t\f")
    return bad / len(text)


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> tuple[str, str]:
    """The visible text of an HTML page, blocks as paragraphs, and its title."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, " ".join("".join(parser.title).split())
