"""PII redaction of stored transcripts: card numbers, phone numbers and email addresses.

Pure functions over text. A card number is 13-19 digits, written as digits (grouped by single spaces or
hyphens) or spoken as digit words ("four one one one ..."), that passes the Luhn check; the last four
digits are kept, as card receipts do. A phone number is an E.164 number (+ and 8-15 digits), a North
American number (555-123-4567, (555) 123 4567), a national number with a trunk 0 (020 7946 0958), or
10-11 digits right after a word like "phone". Dates, amounts, times and order numbers survive: they
are too short, fail the Luhn check, or lack the grouping of a phone number. Spoken phone numbers and
spoken emails are not recognised (docs/audit.md).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_DIGIT_TOKEN = re.compile(r"\d|\b(?:" + "|".join(DIGIT_WORDS) + r")\b", re.IGNORECASE)
# Between two digits of a card: nothing, or one space or hyphen; next to a digit word, any run of
# spaces, commas and hyphens ("four, one, one, one").
_DIGIT_GAP = re.compile(r"[ -]?")
_WORD_GAP = re.compile(r"[\s,-]+")
# (pattern, replacement)
_PHONE_PATTERNS = (
    (re.compile(r"(?<![\w+])\+[1-9](?:[ .-]?\(?\d\)?){7,14}(?!\d)"), "[phone]"),  # E.164, maybe grouped
    (re.compile(r"(?<![\w(])(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"), "[phone]"),  # NANP
    (re.compile(r"(?<![\w])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?!\d)"), "[phone]"),  # national, trunk 0
    # Ungrouped digits only where the caller says it is a phone number.
    (
        re.compile(r"\b((?:phone|mobile|cell|telephone)(?: number)?(?: is)?:? )\d{10,11}\b", re.I),
        r"\1[phone]",
    ),
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@dataclass
class Redacted:
    text: str
    counts: Counter[str] = field(default_factory=Counter)  # kind -> how many were redacted


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digit_runs(text: str) -> list[list[tuple[int, int, str]]]:
    """Runs of consecutive digit tokens (digits or digit words): (start, end, digit) each."""
    runs: list[list[tuple[int, int, str]]] = []
    run: list[tuple[int, int, str]] = []
    prev_word = False
    for m in _DIGIT_TOKEN.finditer(text):
        token = m.group()
        word = not token.isdigit()
        digit = token if not word else DIGIT_WORDS[token.lower()]
        if run:
            gap = text[run[-1][1] : m.start()]
            joined = (_WORD_GAP if word or prev_word else _DIGIT_GAP).fullmatch(gap)
            if not joined:
                runs.append(run)
                run = []
        run.append((m.start(), m.end(), digit))
        prev_word = word
    if run:
        runs.append(run)
    return runs


def _card_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, last four digits) of every card number in ``text``."""
    spans = []
    for run in _digit_runs(text):
        digits = "".join(d for _, _, d in run)
        if len(digits) < 13:
            continue
        # The whole run, else its longest card-length prefix or suffix (a card read out with its CVV).
        # The whole run, else a part cut where the speaker paused (a card read out with its CVV),
        # prefixes first.
        cuts = [i for i in range(1, len(run)) if run[i][0] > run[i - 1][1]]
        candidates = [(0, len(run))] if len(run) <= 19 else []
        candidates += [(0, c) for c in reversed(cuts) if 13 <= c <= 19]
        candidates += [(c, len(run)) for c in cuts if 13 <= len(run) - c <= 19]
        for lo, hi in candidates:
            if luhn_ok(digits[lo:hi]):
                spans.append((run[lo][0], run[hi - 1][1], digits[hi - 4 : hi]))
                break
    return spans


ALL_KINDS = frozenset({"card", "phone", "email"})


def redact(text: str, kinds: Iterable[str] = ALL_KINDS) -> Redacted:
    """``text`` with card numbers, phone numbers and emails (those of ``kinds``) replaced by
    [card ending NNNN], [phone], [email]."""
    kinds = frozenset(kinds)
    counts: Counter[str] = Counter()
    out = text
    if "card" in kinds:  # cards first (their digits would pass for a phone), right to left
        for start, end, last4 in reversed(_card_spans(out)):
            out = f"{out[:start]}[card ending {last4}]{out[end:]}"
            counts["card"] += 1
    if "phone" in kinds:
        for pattern, replacement in _PHONE_PATTERNS:
            out, n = pattern.subn(replacement, out)
            counts["phone"] += n
    if "email" in kinds:
        out, n = _EMAIL.subn("[email]", out)
        counts["email"] += n
    return Redacted(out, +counts)


def redact_json_text(arguments: str, kinds: Iterable[str] = ALL_KINDS) -> Redacted:
    """A tool call's JSON arguments with every string (and every card-like number) redacted; text that
    is not JSON is redacted as text."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return redact(arguments, kinds)
    counts: Counter[str] = Counter()

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            r = redact(v, kinds)
            counts.update(r.counts)
            return r.text
        if isinstance(v, bool):
            return v
        if isinstance(v, int):  # a card number given as a JSON number
            r = redact(str(v), kinds)
            if r.counts:
                counts.update(r.counts)
                return r.text
            return v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    redacted = walk(value)
    return Redacted(json.dumps(redacted, separators=(",", ":"), ensure_ascii=False), +counts)
