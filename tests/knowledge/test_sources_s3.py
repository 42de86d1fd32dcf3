"""S3 sources against a real S3-compatible server (versitygw on loopback): objects under a prefix, ETags
that spare unchanged objects a download, the size limit from the listing, credentials from the Secret,
and an unreachable endpoint."""

from __future__ import annotations

import io
from pathlib import Path

from agent_pod.knowledge.sources import fetch
from agent_pod.knowledge.sources.mounts import Mounts
from agent_pod.knowledge.spec import SourceSpec
from tests.support.net import free_port
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

NOW = 1_800_000_000.0


def mounts_with_credentials(tmp_path: Path) -> Mounts:
    creds = tmp_path / "secrets" / "s3-creds"
    creds.mkdir(parents=True)
    (creds / "accessKeyId").write_text(ACCESS_KEY)
    (creds / "secretAccessKey").write_text(SECRET_KEY + "\n")
    return Mounts(root=tmp_path, secrets=tmp_path / "secrets")


def source(endpoint: str, bucket: str) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "name": "bucket",
            "s3": {
                "endpoint": endpoint,
                "bucket": bucket,
                "prefix": "kb/",
                "credentialsSecretRef": "s3-creds",
            },
            "maxDocumentBytes": 4096,
        }
    )


def put(server: S3Server, bucket: str, key: str, data: bytes) -> None:
    server.client().put_object(bucket, key, io.BytesIO(data), len(data))


async def test_objects_under_the_prefix_are_fetched_and_unchanged_ones_skipped(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    put(s3_server, s3_bucket, "kb/a.md", b"# Alpha\n\nfirst")
    put(s3_server, s3_bucket, "kb/deep/b.txt", b"second")
    put(s3_server, s3_bucket, "other/c.txt", b"not under the prefix")
    mounts = mounts_with_credentials(tmp_path)
    spec = source(s3_server.endpoint, s3_bucket)
    first = await fetch(spec, mounts, {}, NOW)
    assert first.complete and not first.errors
    assert [(d.doc_id, d.uri, d.title) for d in first.documents] == [
        ("bucket/kb/a.md", f"s3://{s3_bucket}/kb/a.md", "Alpha"),
        ("bucket/kb/deep/b.txt", f"s3://{s3_bucket}/kb/deep/b.txt", "b.txt"),
    ]
    assert all(v.etag for v in first.validators.values())

    put(s3_server, s3_bucket, "kb/deep/b.txt", b"second, changed")
    again = await fetch(spec, mounts, first.validators, NOW + 60)
    assert again.kept == {"bucket/kb/a.md"}
    assert [d.text for d in again.documents] == ["second, changed"]


async def test_oversized_and_binary_objects_are_refused_and_kept(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    put(s3_server, s3_bucket, "kb/big.txt", b"x" * 5000)
    put(s3_server, s3_bucket, "kb/pic.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF")
    put(s3_server, s3_bucket, "kb/ok.txt", b"ok")
    fetched = await fetch(source(s3_server.endpoint, s3_bucket), mounts_with_credentials(tmp_path), {}, NOW)
    assert [d.doc_id for d in fetched.documents] == ["bucket/kb/ok.txt"]
    assert sorted((e.document, e.reason) for e in fetched.errors) == [
        ("bucket/kb/big.txt", "TooLarge"),
        ("bucket/kb/pic.jpg", "NotText"),
    ]
    assert fetched.complete and fetched.kept == {"bucket/kb/big.txt", "bucket/kb/pic.jpg"}


async def test_wrong_credentials_or_no_server_are_unreachable_and_incomplete(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    mounts = mounts_with_credentials(tmp_path)
    (mounts.secrets / "s3-creds" / "secretAccessKey").write_text("wrong")
    for endpoint in (s3_server.endpoint, f"http://127.0.0.1:{free_port()}"):
        fetched = await fetch(source(endpoint, s3_bucket), mounts, {}, NOW)
        assert not fetched.complete and fetched.documents == []
        assert [e.reason for e in fetched.errors] == ["Unreachable"]


async def test_a_missing_credentials_secret_is_malformed(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    mounts = Mounts(root=tmp_path, secrets=tmp_path / "secrets")  # nothing mounted
    fetched = await fetch(source(s3_server.endpoint, s3_bucket), mounts, {}, NOW)
    assert not fetched.complete and [e.reason for e in fetched.errors] == ["Malformed"]
