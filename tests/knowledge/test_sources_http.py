"""HTTP sources against a real server on loopback: conditional fetch (ETag, Last-Modified, 304), headers
from a Secret, unreachable and slow servers, and a 200 MB body refused at the limit without being held."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path

from agent_pod.knowledge.sources import fetch
from agent_pod.knowledge.sources.fetched import Validator
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import SourceSpec
from tests.knowledge.doc_server import DocServer, Page
from tests.support.net import free_port

NOW = 1_800_000_000.0


def source(url: str, **fields: object) -> SourceSpec:
    http: dict[str, object] = {"url": url, "timeoutSeconds": fields.pop("timeout", 5)}
    if "secret" in fields:
        http["headersSecretRef"] = {"name": "web", "key": "headers"}
        fields.pop("secret")
    return SourceSpec.model_validate({"name": "web", "http": http, **fields})


async def test_etag_then_304_keeps_the_document_unread(doc_server: DocServer, tmp_path: Path) -> None:
    doc_server.pages["/prices.md"] = Page(b"# Prices\n\nSki pass 40 EUR.", etag='"v1"')
    spec = source(f"{doc_server.origin}/prices.md")
    first = await fetch(spec, Mounts(root=tmp_path), {}, NOW)
    assert first.complete and not first.errors and first.kept == set()
    [doc] = first.documents
    doc_id = f"web/{doc_server.origin}/prices.md"
    assert (doc.doc_id, doc.title, doc.uri) == (doc_id, "Prices", f"{doc_server.origin}/prices.md")
    assert first.validators == {doc_id: Validator(etag='"v1"')}

    again = await fetch(spec, Mounts(root=tmp_path), first.validators, NOW + 60)
    assert doc_server.requests[-1][1]["If-None-Match"] == '"v1"'
    assert again.complete and again.documents == [] and again.kept == {doc_id}

    doc_server.pages["/prices.md"] = Page(b"# Prices\n\nSki pass 45 EUR.", etag='"v2"')
    changed = await fetch(spec, Mounts(root=tmp_path), first.validators, NOW + 120)
    assert [d.text for d in changed.documents] == ["# Prices\n\nSki pass 45 EUR."]
    assert changed.validators[doc_id].etag == '"v2"'


async def test_last_modified_alone_makes_the_fetch_conditional(doc_server: DocServer, tmp_path: Path) -> None:
    stamp = "Wed, 21 Oct 2026 07:28:00 GMT"
    doc_server.pages["/faq.html"] = Page(
        b"<html><head><title>FAQ</title><style>p{}</style></head><body><h1>Hours</h1><p>Open 9 to 5."
        b"<script>x()</script></p></body></html>",
        content_type="text/html",
        last_modified=stamp,
    )
    spec = source(f"{doc_server.origin}/faq.html")
    first = await fetch(spec, Mounts(root=tmp_path), {}, NOW)
    [doc] = first.documents
    assert (doc.title, doc.text) == ("FAQ", "Hours\n\nOpen 9 to 5.")
    again = await fetch(spec, Mounts(root=tmp_path), first.validators, NOW)
    assert doc_server.requests[-1][1]["If-Modified-Since"] == stamp
    assert "If-None-Match" not in doc_server.requests[-1][1]
    assert again.documents == [] and len(again.kept) == 1


async def test_headers_come_from_the_secret(doc_server: DocServer, tmp_path: Path) -> None:
    doc_server.pages["/private"] = Page(b"members only", required_headers={"Authorization": "Bearer s3cret"})
    spec = source(f"{doc_server.origin}/private", secret=True)
    secret = tmp_path / "secrets" / "web" / "headers"
    secret.parent.mkdir(parents=True)
    mounts = Mounts(root=tmp_path, secrets=tmp_path / "secrets")

    secret.write_text("not json")
    malformed = await fetch(spec, mounts, {}, NOW)
    assert [e.reason for e in malformed.errors] == ["Malformed"] and not malformed.complete
    assert doc_server.requests == []  # never sent without its headers

    secret.write_text(json.dumps({"Authorization": "Wrong"}))
    forbidden = await fetch(spec, mounts, {}, NOW)
    assert [e.reason for e in forbidden.errors] == ["Forbidden"] and not forbidden.complete

    secret.write_text(json.dumps({"Authorization": "Bearer s3cret"}))
    ok = await fetch(spec, mounts, {}, NOW)
    assert [d.text for d in ok.documents] == ["members only"]


async def test_unreachable_missing_and_slow_servers_are_errors_that_delete_nothing(
    doc_server: DocServer, tmp_path: Path
) -> None:
    for url, reason in [
        (f"http://127.0.0.1:{free_port()}/gone", "Unreachable"),
        (f"{doc_server.origin}/missing", "NotFound"),
        (f"{doc_server.origin}/slow", "Unreachable"),
    ]:
        fetched = await fetch(source(url, timeout=1), Mounts(root=tmp_path), {}, NOW)
        assert [e.reason for e in fetched.errors] == [reason], url
        assert not fetched.complete and fetched.documents == []
        assert fetched.kept == {f"web/{url}"}  # whatever was indexed from it stays


async def test_binary_content_is_refused_as_not_text(doc_server: DocServer, tmp_path: Path) -> None:
    doc_server.pages["/logo.png"] = Page(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", content_type="image/png")
    doc_server.pages["/latin1"] = Page(b"caf\xe9 cr\xe8me", content_type="text/plain")
    doc_server.pages["/declared"] = Page(b"caf\xe9 cr\xe8me", content_type="text/plain; charset=iso-8859-1")
    results = {}
    for path in ("/logo.png", "/latin1", "/declared"):
        fetched = await fetch(source(f"{doc_server.origin}{path}"), Mounts(root=tmp_path), {}, NOW)
        results[path] = [e.reason for e in fetched.errors] or [d.text for d in fetched.documents]
        assert fetched.complete  # refused for its content: the source itself answered
    assert results == {"/logo.png": ["NotText"], "/latin1": ["NotText"], "/declared": ["café crème"]}


async def test_a_200_mb_body_is_refused_at_the_limit_without_being_held(
    doc_server: DocServer, tmp_path: Path
) -> None:
    size = 200 * 1024 * 1024
    announced = await fetch(
        source(f"{doc_server.origin}/stream/{size}?length=1", maxDocumentBytes=1024 * 1024),
        Mounts(root=tmp_path),
        {},
        NOW,
    )
    assert [e.reason for e in announced.errors] == ["TooLarge"] and announced.complete
    assert "209715200" in announced.errors[0].message  # refused from its Content-Length

    tracemalloc.start()
    try:
        chunked = await fetch(
            source(f"{doc_server.origin}/stream/{size}", maxDocumentBytes=1024 * 1024),
            Mounts(root=tmp_path),
            {},
            NOW,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.reason for e in chunked.errors] == ["TooLarge"] and chunked.documents == []
    assert chunked.kept == {f"web/{doc_server.origin}/stream/{size}"}
    assert peak < 16 * 1024 * 1024, peak  # read up to the 1 MiB limit, not 200 MB
    async with asyncio.timeout(10):
        await doc_server.stream_ended.wait()
    assert doc_server.streamed_bytes < size // 4  # the client hung up long before the end
