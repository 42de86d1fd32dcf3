"""An S3 source: the objects under a prefix of a bucket. An object whose ETag is that of its indexed
version is not downloaded again; an object over the size limit is refused from its listed size."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from minio import Minio

from ..spec import S3Source, SourceSpec
from .fetched import Fetched, Refused, Validator, document
from .text import READ_BYTES, extract, too_large

ACCESS_KEY = "accessKeyId"
SECRET_KEY = "secretAccessKey"


def make_client(spec: S3Source, credentials: Path | None) -> Minio:
    """``credentials``: the mounted Secret's directory (None: anonymous). Blocking (reads the keys)."""
    url = urlsplit(spec.endpoint)
    # one attempt per sync: the next sync is the retry, and a stuck request must not hold a thread long
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5.0, read=30.0), retries=urllib3.Retry(total=0), maxsize=4
    )
    access = secret = None
    if credentials is not None:
        access = (credentials / ACCESS_KEY).read_text().strip()
        secret = (credentials / SECRET_KEY).read_text().strip()
    return Minio(
        url.netloc,
        access_key=access,
        secret_key=secret,
        secure=url.scheme == "https",
        region=spec.region or None,
        http_client=http,
    )


def read_object(client: Minio, bucket: str, name: str, limit: int) -> bytes:
    """An object's bytes, refused past ``limit`` without reading more than that."""
    response = client.get_object(bucket, name)
    try:
        body = bytearray()
        for piece in response.stream(READ_BYTES):
            body += piece
            if len(body) > limit:
                raise too_large(len(body), limit)
        return bytes(body)
    finally:
        response.close()
        response.release_conn()


async def fetch_s3(
    source: SourceSpec, spec: S3Source, credentials: Path | None, validators: dict[str, Validator], now: float
) -> Fetched:
    fetched = Fetched()
    try:
        client = await asyncio.to_thread(make_client, spec, credentials)
    except OSError as exc:
        fetched.complete = False
        fetched.error("Malformed", f"credentials secret {spec.credentials_secret_ref} unreadable: {exc}", now)
        return fetched
    try:
        objects = await asyncio.to_thread(
            lambda: list(client.list_objects(spec.bucket, prefix=spec.prefix, recursive=True))
        )
    except Exception as exc:  # minio raises S3Error, urllib3 errors, OSError ...: all mean unreachable
        fetched.complete = False
        fetched.error("Unreachable", f"cannot list s3://{spec.bucket}/{spec.prefix}: {exc}", now)
        return fetched
    limit = source.max_document_bytes
    for obj in objects:
        key = obj.object_name or ""
        if obj.is_dir or not key:
            continue
        doc_id = f"{source.name}/{key}"
        validator = Validator(etag=obj.etag or "")
        if validator.etag and validators.get(doc_id) == validator:
            fetched.confirm(doc_id)
            continue
        try:
            if obj.size is not None and obj.size > limit:
                raise too_large(obj.size, limit)
            data = await asyncio.to_thread(read_object, client, spec.bucket, key, limit)
            text, title = extract(data, key, obj.content_type or "")
        except Refused as refused:
            fetched.refuse(doc_id, refused, now)
            continue
        except Exception as exc:
            fetched.unreadable(doc_id, "Unreachable", f"cannot read s3://{spec.bucket}/{key}: {exc}", now)
            continue
        uri = f"s3://{spec.bucket}/{key}"
        fetched.documents.append(document(source.name, source.partition, key, uri, text, title, now))
        fetched.validators[doc_id] = validator
    return fetched
