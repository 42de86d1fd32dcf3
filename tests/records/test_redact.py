"""PII redaction of stored transcripts: a table of what must go and what must survive."""

from __future__ import annotations

import json

import pytest

from agent_pod.records.redact import luhn_ok, redact, redact_json_text

REDACTED = [
    ("my card is 4111 1111 1111 1111 thanks", "my card is [card ending 1111] thanks", "card"),
    ("4111-1111-1111-1111", "[card ending 1111]", "card"),
    ("5500005555555559", "[card ending 5559]", "card"),
    ("amex 3782 822463 10005", "amex [card ending 0005]", "card"),
    ("four one one one one one one one one one one one one one one one", "[card ending 1111]", "card"),
    (
        "Four, one, one, one, one one one one, one one one one, one one one one.",
        "[card ending 1111].",
        "card",
    ),
    ("4111 1111 1111 1111 123 456", "[card ending 1111] 123 456", "card"),  # with its CVV, paused
    ("call +44 20 7946 0958 today", "call [phone] today", "phone"),
    ("+14155552671", "[phone]", "phone"),
    ("reach me on 555-123-4567", "reach me on [phone]", "phone"),
    ("(555) 123-4567", "[phone]", "phone"),
    ("1 415.555.2671", "[phone]", "phone"),
    ("020 7946 0958", "[phone]", "phone"),
    ("07700 900123", "[phone]", "phone"),
    ("my phone number is 5551234567", "my phone number is [phone]", "phone"),
    ("mail jane.doe+x@example.co.uk please", "mail [email] please", "email"),
]

SURVIVES = [
    "on 2024-01-15 at 10:30",
    "15/01/2024",
    "the total is $1,299.99",
    "the total is 1 234 567 dollars",
    "order 12345678",
    "order number 123456789012",  # 12 digits: too short for a card
    "4111-1111-1111-1112",  # fails the Luhn check
    "booking BK-19:00 for 2 people",
    "one two three",
    "one moment, oh I see",
    "room 404, floor 3",
    "version 1.2.3",
    "12 34 56 78 90 12 34",  # 14 digits, not Luhn
    "reference 5551234567",  # ungrouped digits without a phone word
]


@pytest.mark.parametrize(("text", "expected", "kind"), REDACTED)
def test_pii_is_redacted(text, expected, kind):
    result = redact(text)
    assert result.text == expected
    assert result.counts == {kind: 1}


@pytest.mark.parametrize("text", SURVIVES)
def test_non_pii_survives(text):
    result = redact(text)
    assert result.text == text
    assert not result.counts


def test_only_the_policys_kinds_are_redacted():
    text = "card 4111111111111111, phone +14155552671, mail a@b.io"
    assert redact(text, ["phone"]).text == "card 4111111111111111, phone [phone], mail a@b.io"
    assert redact(text, []).text == text


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")


def test_json_arguments_redacted_per_value():
    args = json.dumps(
        {"card": "4111 1111 1111 1111", "n": 4111111111111111, "phone": "+1 415 555 2671", "time": "19:00"}
    )
    result = redact_json_text(args)
    assert json.loads(result.text) == {
        "card": "[card ending 1111]",
        "n": "[card ending 1111]",
        "phone": "[phone]",
        "time": "19:00",
    }
    assert result.counts == {"card": 2, "phone": 1}
    assert redact_json_text("not json 4111111111111111").text == "not json [card ending 1111]"
