"""Ingestion into the real SQLite store with the real offline embedder (wordllama): unchanged documents
are not re-embedded, removed ones are tombstoned only after a complete listing, bad input is reported and
loses nothing, a model change re-embeds while the old vectors serve, and a document no sync vouched for
within maxAgeSeconds is stale (and withheld under onStale withhold) on its own. The pure decisions are
tested directly first."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from prometheus_client import REGISTRY

from agent_pod.knowledge.embedder import WordLlamaEmbedder
from agent_pod.knowledge.freshness import document_stale, fresh_since, past
from agent_pod.knowledge.ingest import (
    Ingestor,
    changed,
    dedupe,
    is_stale,
    to_tombstone,
    vouched,
    withhold_after,
)
from agent_pod.knowledge.models import Document, Hit
from agent_pod.knowledge.sources.fetched import Fetched, document
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import DEFAULT_EMBEDDING_MODEL, SourceSpec
from agent_pod.knowledge.store import Store
from tests.knowledge.doc_server import DocServer, Page

NOW = 1_800_000_000.0
SearchMode = Literal["hybrid", "vector", "keyword"]


def doc(key: str, text: str) -> Document:
    return document("docs", "", key, key, text, key, NOW)


# -- the pure decisions


def test_duplicates_are_indexed_once_and_documents_kept_unread_win() -> None:
    a, b, c = doc("a", "same"), doc("b", "same"), doc("c", "other")
    unique, notices = dedupe([c, b, a], {}, NOW)
    assert [d.doc_id for d in unique] == ["docs/a", "docs/c"]
    assert [(n.reason, n.document) for n in notices] == [("Duplicate", "docs/b")]
    assert "docs/a" in notices[0].message

    unique, notices = dedupe([a, c], {"docs/z": a.content_hash}, NOW)  # z is unchanged, not re-read
    assert [d.doc_id for d in unique] == ["docs/c"] and [n.document for n in notices] == ["docs/a"]


def test_only_new_or_changed_documents_are_indexed() -> None:
    a, b = doc("a", "one"), doc("b", "two")
    assert changed([a, b], {"docs/a": a.content_hash, "docs/b": "old"}) == [b]


def test_tombstones_need_a_complete_listing_and_spare_kept_documents() -> None:
    indexed = {"docs/a", "docs/b", "docs/c", "docs/d"}
    listing = Fetched(documents=[doc("a", "x")], kept={"docs/b"})
    assert to_tombstone(indexed, listing, listing.documents) == {"docs/c", "docs/d"}
    listing.complete = False
    assert to_tombstone(indexed, listing, listing.documents) == set()


def test_staleness_and_withholding_follow_max_age_and_on_stale() -> None:
    spec = SourceSpec.model_validate({"name": "s", "configMap": {"name": "c"}, "maxAgeSeconds": 600})
    assert not is_stale(spec, NOW, NOW, NOW + 600) and is_stale(spec, NOW, NOW, NOW + 601)
    assert not is_stale(spec, None, NOW, NOW + 300)  # before a first success: counted from the start
    assert is_stale(spec, NOW, NOW, NOW + 300, stale_documents=1)  # synced, but a document is past
    assert is_stale(spec, None, NOW, NOW + 601)
    assert withhold_after(spec) == 600
    assert withhold_after(spec.model_copy(update={"on_stale": "serve"})) is None
    unbounded = spec.model_copy(update={"max_age_seconds": None})
    assert withhold_after(unbounded) is None and not is_stale(unbounded, None, 0, NOW)


def test_a_document_is_fresh_for_max_age_after_its_last_vouch_the_same_boundary_as_a_source() -> None:
    # a document is stale when vouched for before fresh_since: exactly maxAgeSeconds ago is still fresh,
    # like is_stale's source
    assert fresh_since(600, NOW + 600) == NOW
    assert fresh_since(600, NOW + 600.5) > NOW
    assert not document_stale(600, NOW, NOW + 600) and document_stale(600, NOW, NOW + 600.5)
    assert not document_stale(None, NOW, NOW + 10**6)  # no maxAgeSeconds: never stale


def test_a_store_withholds_a_whole_source_by_name_only_when_every_document_is_past() -> None:
    since = NOW
    assert past(None, None, since) == "none"  # no documents
    assert past(NOW, NOW + 10, since) == "none"  # the oldest vouched for right at the limit
    assert past(NOW - 1, NOW + 10, since) == "some"
    assert past(NOW - 10, NOW - 1, since) == "all"


def test_a_sync_vouches_for_what_it_read_unchanged_or_the_source_confirmed_unchanged() -> None:
    same, edited, new = doc("same", "one"), doc("edited", "two, edited"), doc("new", "three")
    indexed = {
        "docs/same": same.content_hash,
        "docs/edited": "old",
        "docs/refused": "h1",
        "docs/unreadable": "h2",
        "docs/confirmed": "h3",
        "docs/unlisted": "h4",
    }
    fetched = Fetched(documents=[same, edited, new])
    fetched.confirm("docs/confirmed")
    fetched.confirm("docs/never-indexed")
    fetched.kept |= {"docs/refused", "docs/unreadable"}  # as refuse() and unreadable() keep them
    # the edited and new ones are vouched for by their upsert, once indexed; the rest not at all
    assert vouched(fetched, [same, edited, new], indexed) == {"docs/same", "docs/confirmed"}


# -- syncing into the real store


class Wordllama:
    """The real offline embedder under a given model id, optionally truncated to fewer dimensions (its
    vectors are Matryoshka-style): a second real model for the re-embed tests. ``fail`` makes it act as
    an embedding service that went down."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, dims: int = 256) -> None:
        self.model_id = model
        self.dim = dims
        self.fail = False

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail:
            raise ConnectionError("embedding service unavailable")
        return wordllama(self.dim).embed(texts)


@functools.cache
def wordllama(dims: int) -> WordLlamaEmbedder:
    return WordLlamaEmbedder(DEFAULT_EMBEDDING_MODEL, None if dims == 256 else dims)


def embedded(kb: str) -> float:
    return REGISTRY.get_sample_value("voicefleet_kb_chunks_embedded_total", {"kb": kb, "model": "m"}) or 0.0


def files_source(**extra: object) -> SourceSpec:
    return SourceSpec.model_validate(
        {"name": "docs", "files": {"claimName": "docs"}, "chunking": {"maxChars": 200}, **extra}
    )


def found(
    store: Store, embedder: Wordllama, query: str, now: float = NOW, k: int = 5, mode: SearchMode = "hybrid"
) -> list[Hit]:
    vector = embedder.embed([query])[0]
    return store.search(query, vector, k=k, partitions=None, mode=mode, candidates=50, rrf_k=60, now=now)


def search(store: Store, embedder: Wordllama, query: str, now: float = NOW) -> list[str]:
    return [h.doc_id for h in found(store, embedder, query, now)]


async def faq_synced(
    store: Store, tmp_path: Path, kb: str, **source_extra: object
) -> tuple[Path, Wordllama, Ingestor, SourceSpec]:
    """The FAQ in a files source, synced once at NOW: its directory, embedder, ingestor and source."""
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    embedder = Wordllama()
    ingestor = Ingestor(kb, store, embedder, mounts=mounts)
    source = files_source(**source_extra)
    await ingestor.sync(source, NOW)
    return base, embedder, ingestor, source


FAQ = {
    "ski.md": "# Ski passes\n\nA day pass costs 40 euros. Children ride free under six.",
    "hours.md": "# Opening hours\n\nThe lifts run from nine in the morning to five in the afternoon.",
    "refunds.md": "# Refunds\n\nUnused passes are refunded within thirty days of purchase.",
}


def write(base: Path, files: dict[str, str]) -> None:
    base.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (base / name).write_text(text)


async def test_a_sync_indexes_then_skips_unchanged_documents_and_tombstones_removed_ones(
    store: Store, tmp_path: Path
) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    embedder = Wordllama(model="m")
    ingestor = Ingestor("kb-sync", store, embedder, mounts=mounts)
    source = files_source()
    before = embedded("kb-sync")  # the counter is the process's: each store's run adds to it

    status = await ingestor.sync(source, NOW)
    assert (status.documents, status.last_success, status.errors) == (3, NOW, [])
    assert status.chunks >= 3 and embedded("kb-sync") - before == status.chunks
    assert search(store, embedder, "when do the lifts open")[0] == "docs/hours.md"

    again = await ingestor.sync(source, NOW + 60)  # nothing changed: nothing read nor embedded
    assert again.last_success == NOW + 60 and embedded("kb-sync") - before == status.chunks

    (base / "ski.md").write_text("# Ski passes\n\nA day pass costs 45 euros from December.")
    os.utime(base / "ski.md", ns=(1, 1))
    (base / "refunds.md").unlink()
    third = await ingestor.sync(source, NOW + 120)
    assert third.documents == 2 and embedded("kb-sync") - before == status.chunks + 1  # only the changed one
    assert sorted(store.document_hashes("docs")) == ["docs/hours.md", "docs/ski.md"]
    assert "docs/refunds.md" not in search(store, embedder, "refund of unused passes")
    assert (
        store.document_hashes("docs")["docs/ski.md"]
        == document("docs", "", "ski.md", "", (base / "ski.md").read_text(), "", 0).content_hash
    )


async def test_an_unreachable_source_tombstones_nothing_and_goes_stale(store: Store, tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    ingestor = Ingestor("kb-gone", store, Wordllama(), mounts=mounts)
    source = files_source(maxAgeSeconds=600, onStale="serve")
    assert (await ingestor.sync(source, NOW)).documents == 3

    shutil.rmtree(base)  # the volume went away
    failed = await ingestor.sync(source, NOW + 300)
    assert [e.reason for e in failed.errors] == ["NotFound"]
    assert (failed.documents, failed.last_success, failed.last_sync, failed.stale) == (
        3,
        NOW,
        NOW + 300,
        False,
    )
    later = await ingestor.sync(source, NOW + 700)
    assert later.stale and len(store.document_hashes("docs")) == 3


async def test_bad_input_is_reported_and_loses_nothing_indexed(store: Store, tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    ingestor = Ingestor("kb-bad", store, Wordllama(), mounts=mounts)
    source = files_source(maxDocumentBytes=4096)
    await ingestor.sync(source, NOW)
    before = store.document_hashes("docs")

    (base / "hours.md").write_bytes(b"\x00\x01binary now" * 10)  # a good document turned to garbage
    os.utime(base / "hours.md", ns=(1, 1))
    with (base / "ski.md").open("r+b") as f:
        f.truncate(200 * 1024 * 1024)  # and one grown to 200 MB (sparse)
    (base / "copy.md").write_text(FAQ["refunds.md"])  # a duplicate of an indexed one
    status = await ingestor.sync(source, NOW + 60)
    assert sorted((e.reason, e.document) for e in status.errors) == [
        ("Duplicate", "docs/copy.md"),
        ("NotText", "docs/hours.md"),
        ("TooLarge", "docs/ski.md"),
    ]
    assert status.last_success == NOW + 60  # the source answered; refused documents are its content's
    after = store.document_hashes("docs")
    assert after["docs/hours.md"] == before["docs/hours.md"] and after["docs/ski.md"] == before["docs/ski.md"]
    # the duplicated text stays indexed once, as the document that had it first
    assert set(after) == {"docs/hours.md", "docs/refunds.md", "docs/ski.md"}


async def test_an_embedder_failure_fails_the_sync_and_the_next_one_catches_up(
    store: Store, tmp_path: Path
) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    embedder = Wordllama()
    ingestor = Ingestor("kb-fail", store, embedder, mounts=mounts)
    embedder.fail = True
    failed = await ingestor.sync(files_source(), NOW)
    assert [e.reason for e in failed.errors] == ["IndexFailed"] and failed.last_success is None
    assert failed.documents == 0
    embedder.fail = False
    ok = await ingestor.sync(files_source(), NOW + 10)  # nothing was vouched for: everything is read
    assert ok.documents == 3 and ok.last_success == NOW + 10


async def test_a_source_that_stops_answering_is_withheld_max_age_after_its_last_success(
    store: Store, tmp_path: Path
) -> None:
    base, embedder, ingestor, source = await faq_synced(
        store, tmp_path, "kb-stale", maxAgeSeconds=600
    )  # onStale: withhold
    shutil.rmtree(base)
    await ingestor.sync(source, NOW + 500)  # fails: no document is vouched for
    assert search(store, embedder, "ski pass price", now=NOW + 599)
    assert search(store, embedder, "ski pass price", now=NOW + 601) == []
    status = await ingestor.sync(source, NOW + 601)
    assert status.stale and status.stale_documents == 3


async def test_a_model_change_re_embeds_while_the_old_vectors_serve(store: Store, tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    write(base, FAQ)
    old = Wordllama()
    await Ingestor("kb-model", store, old, mounts=mounts).sync(files_source(), NOW)
    chunks = sum(c.chunks for c in store.counts().values())

    new = Wordllama(model="l2_supercat_256/64", dims=64)
    ingestor = Ingestor("kb-model", store, new, mounts=mounts)
    write(base, {"snow.md": "# Snow report\n\nFresh powder, thirty centimetres overnight."})
    await ingestor.sync(files_source(), NOW + 60)  # the new document gets the new model's vectors
    assert store.active_model() == DEFAULT_EMBEDDING_MODEL
    assert search(store, old, "when do the lifts open")[0] == "docs/hours.md"  # old vectors serve

    assert await ingestor.reembed(batch=2) == chunks  # all but the new document's chunks
    assert store.active_model() == "l2_supercat_256/64"
    assert search(store, new, "when do the lifts open")[0] == "docs/hours.md"
    assert search(store, new, "fresh powder snow")[0] == "docs/snow.md"
    assert await ingestor.reembed() == 0


# Each country's prices are a section's second chunk: only its heading says which country it is about.
ROAMING = "# Travel\n\n" + "\n\n".join(
    f"## Roaming in {country}\n\nOur partner networks cover the whole country, the islands included, on "
    "every band your phone supports, and calls connect at the first attempt.\n\n"
    f"A data day pass of one gigabyte is {price} euros, calls are {minute} euros a minute and every text "
    "message costs fifty cents."
    for country, price, minute in (("Japan", 12, 2), ("Canada", 9, 1), ("Brazil", 7, 3), ("Kenya", 5, 4))
)


async def test_a_chunk_deep_in_a_section_is_found_by_its_heading(store: Store, tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    write(mounts.files_dir("docs", claim=True), {"travel.md": ROAMING})
    source = files_source(chunking={"strategy": "markdown", "maxChars": 200, "overlapChars": 0})
    embedder = Wordllama()
    await Ingestor("kb-heading", store, embedder, mounts=mounts).sync(source, NOW)
    question = "what does a data day pass cost in Japan"

    def best() -> tuple[str, str]:
        hit = found(store, embedder, question, k=1, mode="vector")[0]
        return hit.heading, hit.text

    assert best() == ("Travel > Roaming in Japan", ROAMING.split("\n\n")[3])
    # a re-embed (another model) embeds the stored chunks under their headings too
    embedder = Wordllama(model="l2_supercat_256/64", dims=64)
    assert await Ingestor("kb-heading", store, embedder, mounts=mounts).reembed() > 0
    assert best() == ("Travel > Roaming in Japan", ROAMING.split("\n\n")[3])


async def test_http_304_keeps_the_document_and_an_unreachable_server_deletes_nothing(
    store: Store, doc_server: DocServer, tmp_path: Path
) -> None:
    doc_server.pages["/prices"] = Page(b"Season pass 500 euros.", etag='"1"')
    embedder = Wordllama()
    ingestor = Ingestor("kb-http", store, embedder, mounts=Mounts(root=tmp_path))
    source = SourceSpec.model_validate({"name": "web", "http": {"url": f"{doc_server.origin}/prices"}})
    assert (await ingestor.sync(source, NOW)).documents == 1
    again = await ingestor.sync(source, NOW + 60)
    assert doc_server.requests[-1][1]["If-None-Match"] == '"1"'
    assert (again.documents, again.last_success, again.errors) == (1, NOW + 60, [])

    await doc_server.stop()
    down = await ingestor.sync(source, NOW + 120)
    assert [e.reason for e in down.errors] == ["Unreachable"]
    assert (down.documents, down.last_success) == (1, NOW + 60)
    assert search(store, embedder, "season pass price", now=NOW + 120) == [f"web/{doc_server.origin}/prices"]


async def test_a_refused_update_serves_the_old_version_until_max_age_then_withholds_only_that_document(
    store: Store, tmp_path: Path
) -> None:
    base, embedder, ingestor, source = await faq_synced(
        store, tmp_path, "kb-docfresh", maxAgeSeconds=600
    )  # onStale: withhold

    (base / "hours.md").write_bytes(b"\x00\x01binary now" * 10)  # its update is refused (NotText)
    os.utime(base / "hours.md", ns=(1, 1))
    refused = await ingestor.sync(source, NOW + 300)
    assert [e.reason for e in refused.errors] == ["NotText"] and refused.last_success == NOW + 300
    assert not refused.stale and refused.stale_documents == 0
    assert search(store, embedder, "when do the lifts open", now=NOW + 300)[0] == "docs/hours.md"

    # past maxAge: the source keeps answering, the others are confirmed unchanged, hours.md is not
    later = await ingestor.sync(source, NOW + 660)
    assert later.last_success == NOW + 660 and (later.stale, later.stale_documents) == (True, 1)
    assert "docs/hours.md" not in search(store, embedder, "when do the lifts open", now=NOW + 660)
    assert search(store, embedder, "ski pass price", now=NOW + 660)[0] == "docs/ski.md"
    assert "docs/refunds.md" in search(store, embedder, "refund of unused passes", now=NOW + 660)
    assert len(store.document_hashes("docs")) == 3  # withheld, not lost

    write(base, {"hours.md": FAQ["hours.md"].replace("five", "six")})  # fixed at the source
    good = await ingestor.sync(source, NOW + 700)
    assert (good.errors, good.stale, good.stale_documents) == ([], False, 0)
    assert search(store, embedder, "when do the lifts open", now=NOW + 700)[0] == "docs/hours.md"


async def test_with_on_stale_serve_a_document_past_max_age_serves_and_its_source_reports_stale(
    store: Store, tmp_path: Path
) -> None:
    base, embedder, ingestor, source = await faq_synced(
        store, tmp_path, "kb-docserve", maxAgeSeconds=600, onStale="serve"
    )
    with (base / "ski.md").open("r+b") as f:
        f.truncate(20 * 1024 * 1024)  # grown past maxDocumentBytes (sparse): refused as TooLarge
    status = await ingestor.sync(source, NOW + 700)
    assert [e.reason for e in status.errors] == ["TooLarge"]
    assert (status.stale, status.stale_documents) == (True, 1)
    assert search(store, embedder, "ski pass price", now=NOW + 700)[0] == "docs/ski.md"
