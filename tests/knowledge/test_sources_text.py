"""Text extraction, directly: markdown and HTML titles, HTML reduced to its visible text, charsets, and
binary or garbage content refused as NotText; bounded file reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_pod.knowledge.sources.fetched import Refused
from agent_pod.knowledge.sources.text import extract, read_file


def test_markdown_keeps_its_text_and_titles_by_its_first_heading() -> None:
    assert extract(b"intro\n\n# Prices\n\n## Winter\n", "docs/prices.md") == (
        "intro\n\n# Prices\n\n## Winter\n",
        "Prices",
    )
    assert extract(b"no heading", "notes.md") == ("no heading", "notes.md")


def test_html_is_reduced_to_visible_text_in_paragraphs() -> None:
    html = (
        b"<!doctype html><html><head><title> Opening\n hours </title><script>var x = '<p>';</script>"
        b"<style>p { color: red }</style></head><body><nav>Home</nav><h1>Hours</h1>"
        b"<p>Lifts run   9&ndash;5.</p><ul><li>Mon</li><li>Tue</li></ul></body></html>"
    )
    text, title = extract(html, "/hours", "text/html; charset=utf-8")
    assert title == "Opening hours"
    assert text == "Home\n\nHours\n\nLifts run 9\u20135.\n\nMon\n\nTue"


def test_a_byte_order_mark_is_dropped_and_a_declared_charset_is_honoured() -> None:
    assert extract("\ufeffhello".encode(), "a.txt")[0] == "hello"
    assert extract("grüße".encode("latin-1"), "a.txt", "text/plain; charset=ISO-8859-1")[0] == "grüße"


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"PK\x03\x04\x14\x00\x00\x00", "", "NotText"),  # a zip: NUL bytes
        ("grüße".encode("latin-1"), "", "NotText"),  # not UTF-8, no charset declared
        (b"\x1b[31m\x07\x01\x02\x03 ok", "", "NotText"),  # mostly control characters
        (b"text", "text/plain; charset=no-such-charset", "NotText"),
        (b" \n\t ", "", "Empty"),
        (b"<html><script>only()</script></html>", "text/html", "Empty"),
    ],
)
def test_binary_garbage_and_empty_content_is_refused(data: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        extract(data, "x", content_type)
    assert refused.value.reason == reason


def test_a_little_control_noise_in_real_text_is_accepted() -> None:
    text = "A long enough paragraph of ordinary prose with one stray bell\x07 in it."
    assert extract(text.encode(), "a.txt")[0] == text


def test_file_reads_stop_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 2048)
    assert read_file(path, 2048) == b"x" * 2048
    with pytest.raises(Refused) as refused:
        read_file(path, 2047)
    assert refused.value.reason == "TooLarge"
