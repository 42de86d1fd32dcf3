"""The offline token estimate errs high against real BPE tokenizers for what calls carry.

The real counts were measured once with gpt-tokenizer 3 (npm; the o200k_base and cl100k_base encodings
it bundles), since tiktoken needs to download its files and this machine has no network. Random
mixed-case strings (base64) are the documented exception: about half the real count.
"""

from __future__ import annotations

import pytest

from agent_pod.context.tokens import text_tokens

# (name, text, o200k_base tokens, cl100k_base tokens)
MEASURED = [
    (
        "english",
        "I would like to move my booking from Friday to Saturday evening at seven, for four people, please. "
        * 5,
        106,
        106,
    ),
    (
        "agent",
        "Of course. I have moved your table to Saturday at 7 pm for four. "
        "Your confirmation number is BK-1234. Is there anything else I can help you with today?",
        37,
        37,
    ),
    (
        "tool_result",
        '{"confirmation":"BK-19:00","people":2,"day":"friday","time":"19:00","status":"confirmed","notes":null}',
        32,
        32,
    ),
    (
        "german",
        "Ich möchte meine Reservierung von Freitag auf Samstagabend um sieben Uhr verschieben, "
        "für vier Personen.",
        20,
        26,
    ),
    (
        "french",
        "Je voudrais déplacer ma réservation de vendredi à samedi soir à dix-neuf heures "
        "pour quatre personnes.",
        19,
        26,
    ),
    ("japanese", "予約を金曜日から土曜日の夜七時に変更したいです。四人でお願いします。", 22, 37),
    ("chinese", "我想把周五的预订改到周六晚上七点，四个人。", 19, 27),  # noqa: RUF001 (real CJK punctuation)
    ("numbers", "+1 555 010 0199, account 4929-1234-5678-9012, order 88231, 2026-12-01T14:03:00Z", 43, 43),
    ("sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 43, 43),
]


@pytest.mark.parametrize(("name", "text", "o200k", "cl100k"), MEASURED, ids=[m[0] for m in MEASURED])
def test_the_estimate_is_at_least_the_real_count(name: str, text: str, o200k: int, cl100k: int) -> None:
    estimate = text_tokens(text)
    assert estimate >= max(o200k, cl100k)
    assert estimate <= 2 * max(o200k, cl100k)  # high, but not so high that budgets waste most of the room
