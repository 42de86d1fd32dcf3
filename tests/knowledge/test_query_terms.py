"""A query's words for each keyword index: never an operator of its query language."""

from __future__ import annotations

from agent_pod.knowledge.query_terms import MAX_QUERY_TERMS, fts5_match, query_words, tsquery


def test_words_are_lower_cased_once_each_and_bounded() -> None:
    assert query_words("Price price PRICE list") == ["price", "list"]
    assert query_words("¿Ñandú?") == ["ñandú"]
    assert len(query_words(" ".join(f"w{i}" for i in range(200)))) == MAX_QUERY_TERMS


def test_stopwords_are_dropped_unless_they_are_the_whole_query() -> None:
    assert query_words("What is the price of a call to the US?") == ["price", "call", "us"]
    assert query_words("To be or not to be") == ["to", "be", "or", "not"]


def test_fts5_match_quotes_each_word() -> None:
    assert fts5_match('Price "list" AND NEAR(x*) price') == '"price" OR "list" OR "near" OR "x"'
    assert fts5_match(" *() ") == ""


def test_tsquery_or_s_plain_words() -> None:
    assert tsquery("refund & !policy | <-> foo_bar:*") == "refund | policy | foo | bar"
    assert tsquery("'') (") == ""
