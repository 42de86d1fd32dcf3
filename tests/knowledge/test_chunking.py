"""The four chunking strategies: offsets cover the text, no chunk is over maxChars, the overlap is honoured,
markdown chunks carry their heading path."""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent_pod.knowledge.chunking import chunk_document, effective_overlap, embedding_text, spans
from agent_pod.knowledge.spec import ChunkingSpec

WORDS = st.sampled_from(
    ["price", "list", "Refunds", "take", "5", "days.", "Why?", "ok!", "a", "supercalifragilistic" * 8]
)
SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  \n \n", ". ", "\t"])
LINES = st.sampled_from(["# Title", "## Sub", "### Deep", "```", "plain line", "#not a heading"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 120))):
        if draw(st.integers(0, 9)) == 0:
            parts.append("\n" + draw(LINES) + "\n")
        else:
            parts.append(draw(WORDS) + draw(SEPARATORS))
    return "".join(parts)


SPECS = st.builds(
    ChunkingSpec,
    strategy=st.sampled_from(["paragraph", "sentence", "markdown", "fixed"]),
    max_chars=st.integers(100, 400),
    overlap_chars=st.integers(0, 300),
)


@settings(max_examples=400, deadline=None)
@given(texts(), SPECS)
@example(  # a whitespace cut right at the previous window's end once made a window that did not move
    "price\n\n" + " ".join(["supercalifragilistic" * 8] * 2) + " \n# Title\n",
    ChunkingSpec(strategy="paragraph", max_chars=160, overlap_chars=80),
)
@example(  # ... and a cut in the whitespace right after it, one whose trimmed end did not move
    "price list "
    + "price " * 9
    + "\n# Title\n"
    + "price " * 8
    + " \n \n"
    + "supercalifragilistic" * 8
    + " \n",
    ChunkingSpec(strategy="fixed", max_chars=118, overlap_chars=56),
)
def test_chunks_cover_the_text_within_max_chars_and_overlap(text: str, spec: ChunkingSpec) -> None:
    chunks = chunk_document("src/doc", text, spec)
    covered = [False] * len(text)
    for i, chunk in enumerate(chunks):
        assert chunk.chunk_id == f"src/doc#{i}" and chunk.ordinal == i
        assert chunk.text == text[chunk.start : chunk.end]
        assert 0 < len(chunk.text) <= spec.max_chars
        assert chunk.text == chunk.text.strip()
        for j in range(chunk.start, chunk.end):
            covered[j] = True
        if i:
            previous = chunks[i - 1]
            assert chunk.start > previous.start and chunk.end > previous.end  # always forward
            assert previous.end - chunk.start <= effective_overlap(spec)  # overlap, never more
    assert all(covered[j] or text[j].isspace() for j in range(len(text)))


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from("ab"), min_size=1, max_size=3000), st.integers(100, 500), st.integers(0, 600))
def test_fixed_windows_repeat_exactly_the_overlap_when_there_is_no_whitespace(
    text: str, max_chars: int, overlap: int
) -> None:
    spec = ChunkingSpec(strategy="fixed", max_chars=max_chars, overlap_chars=overlap)
    cut = spans(text, spec)
    step = max_chars - effective_overlap(spec)
    assert [s.start for s in cut] == list(range(0, max(len(text) - effective_overlap(spec), 1), step))[
        : len(cut)
    ]
    assert cut[-1].end == len(text)
    for previous, span in itertools.pairwise(cut):
        assert previous.end - span.start == effective_overlap(spec)


def test_paragraphs_are_packed_and_never_cut_when_they_fit() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 15 for i in range(6)]  # ~90 chars each
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = chunk_document("d", text, ChunkingSpec(strategy="paragraph", max_chars=200, overlap_chars=0))
    assert [c.text.count("Paragraph") for c in chunks] == [2, 2, 2]
    assert all(c.text.startswith("Paragraph") and c.text.endswith("word") for c in chunks)


def test_sentences_are_kept_whole() -> None:
    text = " ".join(f"Sentence number {i} says something short." for i in range(10))
    chunks = chunk_document("d", text, ChunkingSpec(strategy="sentence", max_chars=100, overlap_chars=0))
    assert len(chunks) > 3
    assert all(c.text.startswith("Sentence") and c.text.endswith("short.") for c in chunks)


def test_sentence_overlap_repeats_the_previous_tail_from_a_word_start() -> None:
    text = " ".join(f"Sentence number {i} says something short." for i in range(10))
    chunks = chunk_document("d", text, ChunkingSpec(strategy="sentence", max_chars=100, overlap_chars=20))
    for previous, chunk in itertools.pairwise(chunks):
        assert 0 < previous.end - chunk.start <= 20
        assert text[chunk.start - 1] == " "


def test_markdown_sections_carry_their_heading_path_and_ignore_code_fences() -> None:
    text = (
        "Intro text.\n\n# Prices\nThe list.\n\n## Winter\nSki pass 40.\n\n```\n# not a heading\n```\n\n"
        "### Kids\nHalf price.\n\n## Summer\nBike 20.\n\n# Contact\nCall us.\n"
    )
    chunks = chunk_document("d", text, ChunkingSpec(strategy="markdown", max_chars=500, overlap_chars=0))
    assert [(c.heading, c.text.splitlines()[0]) for c in chunks] == [
        ("", "Intro text."),
        ("Prices", "# Prices"),
        ("Prices > Winter", "## Winter"),
        ("Prices > Winter > Kids", "### Kids"),
        ("Prices > Summer", "## Summer"),
        ("Contact", "# Contact"),
    ]
    assert "# not a heading" in chunks[2].text


def test_a_long_markdown_section_is_split_and_every_piece_keeps_the_heading() -> None:
    body = "\n\n".join("Line of the long section " + "x" * 60 for _ in range(10))
    text = f"# Big\n\n{body}\n"
    chunks = chunk_document("d", text, ChunkingSpec(strategy="markdown", max_chars=200, overlap_chars=0))
    assert len(chunks) >= 5
    assert {c.heading for c in chunks} == {"Big"}


def test_blank_text_has_no_chunks() -> None:
    for strategy in ("paragraph", "sentence", "markdown", "fixed"):
        assert chunk_document("d", " \n\n\t ", ChunkingSpec(strategy=strategy)) == []


def test_a_chunk_is_embedded_under_its_heading_path_unless_its_first_line_names_it() -> None:
    later = "Calls cost 2 euros a minute."
    assert embedding_text("Travel", "Travel > Roaming in Japan", later) == (
        "Travel > Roaming in Japan\n\nCalls cost 2 euros a minute."
    )
    first = "## Roaming in Japan\n\nOur partner covers the islands."
    assert embedding_text("Travel", "Travel > Roaming in Japan", first) == first
    assert embedding_text("Price list", "", later) == f"Price list\n\n{later}"  # no heading: the title
    assert embedding_text("", "", later) == later
