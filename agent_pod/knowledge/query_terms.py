"""A search query's words, as each store's keyword index takes them: any of the words matches, and nothing
the caller typed is read as an operator of the index's query language."""

from __future__ import annotations

import re

MAX_QUERY_TERMS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


# English function words: in nearly every chunk, so an OR query holding one ranks the whole index (tens of
# ms at 100k chunks) for a term BM25 weighs at almost nothing anyway
# fmt: off
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no",
    "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why",
    "will", "with", "would", "you", "your",
))
# fmt: on


def query_words(text: str) -> list[str]:
    """Lower-cased words, first occurrence only, at most ``MAX_QUERY_TERMS``; stopwords dropped unless
    the query is nothing else."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    content = [w for w in words if w not in STOPWORDS]
    return (content or words)[:MAX_QUERY_TERMS]


def fts5_match(text: str) -> str:
    """An SQLite FTS5 MATCH expression: each word quoted (a phrase of one), OR-ed."""
    return " OR ".join(f'"{w}"' for w in query_words(text))


def tsquery(text: str) -> str:
    """A PostgreSQL to_tsquery expression: the words, OR-ed; split at underscores, which to_tsquery's
    parser would otherwise split itself (letters and digits only reach it)."""
    words = [part for w in query_words(text) for part in w.split("_") if part]
    return " | ".join(dict.fromkeys(words))
