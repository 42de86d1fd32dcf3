"""Splitting the LLM's text stream into pieces for TTS.

The first piece is cut early (at a clause boundary once it is a few words
long) so speech starts before the LLM has finished its first sentence; later
pieces follow sentence boundaries, with clause and whitespace cuts for run-on
text so no piece grows without bound.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2013\u2014]\s")  # comma, semicolon, colon, en/em dash


class SpeechChunker:
    def __init__(self, first_min_chars: int = 16, clause_min_chars: int = 80, max_chars: int = 240) -> None:
        self.first_min_chars = first_min_chars
        self.clause_min_chars = clause_min_chars
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that are complete."""
        self._buf += text
        out: list[str] = []
        while (cut := self._cut()) is not None:
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                out.append(piece)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The rest, at the end of the stream."""
        piece, self._buf = self._buf.strip(), ""
        if piece:
            self._emitted += 1
            return [piece]
        return []

    def _cut(self) -> int | None:
        buf = self._buf
        m = _SENTENCE_END.search(buf)
        if m is not None:
            return m.end()
        min_clause = self.first_min_chars if self._emitted == 0 else self.clause_min_chars
        for m in _CLAUSE_END.finditer(buf):
            if m.end() >= min_clause:
                return m.end()
        if len(buf) > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return None
