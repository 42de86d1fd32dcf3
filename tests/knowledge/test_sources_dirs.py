"""ConfigMap and files sources on real directories: the kubelet's layout of a ConfigMap volume, a missing
or empty ConfigMap and missing keys (errors, never deletions), globbing, unchanged files left unread, and
a 200 MB file refused without being read."""

from __future__ import annotations

import os
from pathlib import Path

from agent_pod.knowledge.sources import fetch
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import SourceSpec

NOW = 1_800_000_000.0


def config_map_volume(directory: Path, files: dict[str, bytes]) -> None:
    """The kubelet's atomic-writer layout: keys are links into ..data, a link to a timestamped dir."""
    stamped = directory / "..2026_12_01_10_00_00.000000001"
    stamped.mkdir(parents=True)
    for key, data in files.items():
        (stamped / key).write_bytes(data)
    (directory / "..data").symlink_to(stamped.name)
    for key in files:
        (directory / key).symlink_to(Path("..data") / key)


def cm_source(keys: list[str] | None = None) -> SourceSpec:
    return SourceSpec.model_validate({"name": "faq", "configMap": {"name": "faq-cm", "keys": keys or []}})


async def test_config_map_keys_become_documents_and_kubelet_entries_do_not(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    config_map_volume(
        mounts.config_map_dir("faq"), {"hours.md": b"# Hours\n\n9 to 5", "refunds.txt": b"30 days"}
    )
    fetched = await fetch(cm_source(), mounts, {}, NOW)
    assert fetched.complete and not fetched.errors
    assert [(d.doc_id, d.title, d.uri, d.text) for d in fetched.documents] == [
        ("faq/hours.md", "Hours", "configmap://faq-cm/hours.md", "# Hours\n\n9 to 5"),
        ("faq/refunds.txt", "refunds.txt", "configmap://faq-cm/refunds.txt", "30 days"),
    ]


async def test_a_missing_or_empty_config_map_is_an_error_never_a_deletion(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    missing = await fetch(cm_source(), mounts, {}, NOW)
    mounts.config_map_dir("faq").mkdir(parents=True)  # optional: true and the ConfigMap deleted
    empty = await fetch(cm_source(), mounts, {}, NOW)
    for fetched in (missing, empty):
        assert not fetched.complete and fetched.documents == []
        assert [e.reason for e in fetched.errors] == ["NotFound"]


async def test_listed_keys_missing_or_malformed_are_kept_and_block_tombstones(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    config_map_volume(mounts.config_map_dir("faq"), {"hours.md": b"9 to 5", "blob": b"\x00\x01\x02"})
    fetched = await fetch(cm_source(["hours.md", "prices.md", "../etc", "blob"]), mounts, {}, NOW)
    assert [d.doc_id for d in fetched.documents] == ["faq/hours.md"]
    assert [(e.reason, e.document) for e in fetched.errors] == [
        ("NotFound", "faq/prices.md"),
        ("Malformed", "faq/../etc"),
        ("NotText", "faq/blob"),
    ]
    assert fetched.kept == {"faq/prices.md", "faq/../etc", "faq/blob"}
    assert not fetched.complete


def files_source(**files: object) -> SourceSpec:
    return SourceSpec.model_validate(
        {"name": "docs", "files": {"claimName": "docs-pvc", **files}, "maxDocumentBytes": 1024 * 1024}
    )


async def test_files_under_the_glob_are_read_once_until_they_change(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True) / "kb"
    (base / "sub").mkdir(parents=True)
    (base / "a.md").write_text("# A\n\nalpha")
    (base / "sub" / "b.md").write_text("beta")
    (base / "notes.txt").write_text("not matched")
    spec = files_source(path="/kb", glob="**/*.md")
    first = await fetch(spec, mounts, {}, NOW)
    assert first.complete and [d.doc_id for d in first.documents] == ["docs/a.md", "docs/sub/b.md"]
    assert first.documents[0].uri == str(base / "a.md")

    again = await fetch(spec, mounts, first.validators, NOW + 60)
    assert again.documents == [] and again.kept == {"docs/a.md", "docs/sub/b.md"}

    (base / "sub" / "b.md").write_text("beta, changed")
    os.utime(base / "sub" / "b.md", ns=(1, 1))  # a different mtime, whatever the clock's resolution
    changed = await fetch(spec, mounts, first.validators, NOW + 120)
    assert [d.text for d in changed.documents] == ["beta, changed"] and changed.kept == {"docs/a.md"}


async def test_a_200_mb_file_and_a_binary_file_are_refused_and_kept(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    base = mounts.files_dir("docs", claim=True)
    base.mkdir(parents=True)
    with (base / "huge.txt").open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB by its size, no disk used; reading it would show
    (base / "image.bin").write_bytes(bytes(range(256)) * 4)
    (base / "garbage.txt").write_text("\x01\x02\x03\x04 mostly control characters \x05\x06\x07\x08" * 3)
    (base / "ok.txt").write_text("fine")
    fetched = await fetch(files_source(), mounts, {}, NOW)
    assert [d.doc_id for d in fetched.documents] == ["docs/ok.txt"]
    assert sorted((e.document, e.reason) for e in fetched.errors) == [
        ("docs/garbage.txt", "NotText"),
        ("docs/huge.txt", "TooLarge"),
        ("docs/image.bin", "NotText"),
    ]
    assert fetched.complete  # refused for their content: the listing is whole, the others may go


async def test_a_missing_directory_or_a_path_out_of_the_volume_lists_nothing(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    mounts.files_dir("docs", claim=True).mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("outside")
    for path in ("/nope", "/../../.."):
        fetched = await fetch(files_source(path=path), mounts, {}, NOW)
        assert not fetched.complete and fetched.documents == []
        assert [e.reason for e in fetched.errors] == ["NotFound"]


async def test_files_without_a_claim_live_on_the_store_volume(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    store = mounts.files_dir("docs", claim=False)
    (store / "inbox").mkdir(parents=True)
    (store / "inbox" / "x.txt").write_text("on the store volume")
    spec = SourceSpec.model_validate({"name": "docs", "files": {"path": "inbox"}})
    fetched = await fetch(spec, mounts, {}, NOW)
    assert [d.text for d in fetched.documents] == ["on the store volume"]


async def test_a_glob_pathlib_cannot_use_is_malformed(tmp_path: Path) -> None:
    mounts = Mounts(root=tmp_path)
    mounts.files_dir("docs", claim=True).mkdir(parents=True)
    fetched = await fetch(files_source(glob="/etc/*"), mounts, {}, NOW)
    assert not fetched.complete and [e.reason for e in fetched.errors] == ["Malformed"]
