"""Cutting a document's text into chunks (ChunkingSpec): pure functions from text to offset spans.

Every strategy first finds its natural units (paragraphs, sentences, markdown sections, or the whole text),
then packs consecutive units into chunks of at most ``max_chars``; a unit longer than that is cut into
windows, preferably at whitespace. Each chunk after the first repeats up to the overlap from the end of the
previous one. Chunks are trimmed of surrounding whitespace, so every non-whitespace character of the text
is in at least one chunk, and ``text[start:end]`` is the chunk's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .models import Chunk
from .spec import ChunkingSpec

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?\u2026\u3002])|(?<=[.!?\u2026\u3002][\"'\u201d)\]]))\s+|\n[ \t\r\f\v]*\n\s*"
)
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    heading: str = ""


def chunk_document(doc_id: str, text: str, spec: ChunkingSpec) -> list[Chunk]:
    """The document's chunks, ids ``doc_id#ordinal`` in text order."""
    return [
        Chunk(
            chunk_id=f"{doc_id}#{i}",
            doc_id=doc_id,
            ordinal=i,
            text=text[s.start : s.end],
            start=s.start,
            end=s.end,
            heading=s.heading,
        )
        for i, s in enumerate(spans(text, spec))
    ]


def embedding_text(title: str, heading: str, text: str) -> str:
    """What a chunk is embedded as: its text under its heading path (or, without one, its document's
    title), so a chunk deep in a section still carries what the section is about. Nothing is added when
    the text's first line already names it (a section's first chunk starts with its heading line)."""
    context = heading or title
    last = context.rsplit(" > ", 1)[-1].strip()
    first_line = text.split("\n", 1)[0]
    if not last or last.lower() in first_line.lower():
        return text
    return f"{context}\n\n{text}"


def spans(text: str, spec: ChunkingSpec) -> list[Span]:
    """The chunks of ``text`` under ``spec`` as offset spans."""
    overlap = effective_overlap(spec)
    if spec.strategy == "markdown":
        return [
            chunk
            for section in markdown_sections(text)
            for chunk in pack(text, split(text, section, _PARAGRAPH_BREAK), spec.max_chars, overlap)
        ]
    whole = Span(0, len(text))
    if spec.strategy == "fixed":
        units = [u for u in [trim(text, whole)] if u is not None]
    else:
        units = split(text, whole, _PARAGRAPH_BREAK if spec.strategy == "paragraph" else _SENTENCE_END)
    return pack(text, units, spec.max_chars, overlap)


def effective_overlap(spec: ChunkingSpec) -> int:
    """The overlap actually used: at most half a chunk, so every chunk moves forward by half at least."""
    return min(spec.overlap_chars, spec.max_chars // 2)


def trim(text: str, span: Span) -> Span | None:
    """``span`` without surrounding whitespace; None when nothing else is left."""
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end, span.heading) if start < end else None


def split(text: str, span: Span, separator: re.Pattern[str]) -> list[Span]:
    """The non-blank pieces of ``span`` between matches of ``separator``."""
    pieces: list[Span] = []
    start = span.start
    for match in separator.finditer(text, span.start, span.end):
        pieces.append(Span(start, match.start(), span.heading))
        start = match.end()
    pieces.append(Span(start, span.end, span.heading))
    return [t for t in (trim(text, p) for p in pieces) if t is not None]


def markdown_sections(text: str) -> list[Span]:
    """One span per heading (from its line to the next heading), each with its heading path; text before
    the first heading has an empty path. Headings inside fenced code blocks do not count."""
    sections: list[Span] = []
    path: list[tuple[int, str]] = []
    start, heading, fenced, offset = 0, "", False, 0
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line.rstrip("\r\n"))
        if match:
            sections.append(Span(start, offset, heading))
            level = len(match.group(1))
            path = [(lv, title) for lv, title in path if lv < level] + [(level, match.group(2).strip())]
            start, heading = offset, " > ".join(title for _, title in path)
        offset += len(line)
    sections.append(Span(start, len(text), heading))
    return [t for t in (trim(text, s) for s in sections) if t is not None]


def pack(text: str, units: list[Span], max_chars: int, overlap: int) -> list[Span]:
    """Consecutive units packed into chunks of at most ``max_chars``; units past that are windowed."""
    chunks: list[Span] = []
    current: Span | None = None
    for unit in units:
        if current is not None and unit.end - current.start <= max_chars:
            current = Span(current.start, unit.end, unit.heading)
            continue
        if current is not None:
            chunks.append(current)
        start = unit.start
        if chunks:
            # the overlap gives way to the unit: a unit that fits in a chunk is never cut for the overlap
            start = min(max(overlap_start(text, chunks[-1], overlap), unit.end - max_chars), unit.start)
        if unit.end - start <= max_chars:
            current = Span(start, unit.end, unit.heading)
            continue
        windows = windows_of(text, Span(start, unit.end, unit.heading), max_chars, overlap)
        chunks.extend(windows[:-1])
        current = windows[-1]
    if current is not None:
        chunks.append(current)
    return [t for t in (trim(text, c) for c in chunks) if t is not None]


def windows_of(text: str, span: Span, max_chars: int, overlap: int) -> list[Span]:
    """``span`` cut into windows of at most ``max_chars``, at whitespace where there is some in the
    window's second half, each overlapping the previous one by up to ``overlap``."""
    windows: list[Span] = []
    start = span.start
    while span.end - start > max_chars:
        end = start + max_chars
        # a cut past the previous window's end and the whitespace after it, or the window, trimmed, would
        # not move forward
        floor = max(
            start + max_chars // 2, next_word(text, windows[-1].end, span.end) + 1 if windows else start
        )
        cut = last_whitespace(text, floor, end)
        window = Span(start, cut if cut is not None else end, span.heading)
        windows.append(window)
        start = overlap_start(text, window, overlap)
    windows.append(Span(start, span.end, span.heading))
    return windows


def overlap_start(text: str, previous: Span, overlap: int) -> int:
    """Where a chunk after ``previous`` starts: ``overlap`` characters before its end (at most half of
    it, so chunks move forward by half a chunk at least), moved forward to a word's start when there is
    whitespace in the overlap."""
    start = previous.end - min(overlap, (previous.end - previous.start) // 2)
    match = _WHITESPACE.search(text, start, previous.end)
    if match is not None and start > 0 and not text[start - 1].isspace():
        start = match.end()
    return min(start, previous.end)


def next_word(text: str, lo: int, hi: int) -> int:
    """The offset of the first non-whitespace character in ``text[lo:hi]`` (``hi`` when none)."""
    while lo < hi and text[lo].isspace():
        lo += 1
    return lo


def last_whitespace(text: str, lo: int, hi: int) -> int | None:
    """The offset of the last whitespace character in ``text[lo:hi]``."""
    for i in range(hi - 1, lo - 1, -1):
        if text[i].isspace():
            return i
    return None
