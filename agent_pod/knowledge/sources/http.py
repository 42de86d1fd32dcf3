"""An HTTP(S) source: one document, fetched conditionally (If-None-Match / If-Modified-Since; 304 means
unchanged) with request headers from a Secret, and read in pieces so an oversized body is dropped at the
limit, never held whole."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from ..spec import HTTPSource, SourceSpec
from .fetched import Fetched, Refused, Validator, document
from .text import READ_BYTES, extract, too_large

_STATUS_REASONS = {401: "Forbidden", 403: "Forbidden", 404: "NotFound", 410: "NotFound"}


def request_headers(secret: Path | None) -> dict[str, str]:
    """The Secret's JSON object of headers (blocking read)."""
    if secret is None:
        return {}
    try:
        headers = json.loads(secret.read_text())
    except (OSError, ValueError) as exc:
        raise Refused("Malformed", f"headers secret unreadable: {exc}") from None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise Refused("Malformed", "headers secret is not a JSON object of strings")
    return headers


def conditional_headers(validator: Validator | None) -> dict[str, str]:
    if validator is None:
        return {}
    headers = {}
    if validator.etag:
        headers["If-None-Match"] = validator.etag
    if validator.last_modified:
        headers["If-Modified-Since"] = validator.last_modified
    return headers


async def fetch_http(
    source: SourceSpec, spec: HTTPSource, secret: Path | None, validator: Validator | None, now: float
) -> Fetched:
    fetched = Fetched()
    doc_id = f"{source.name}/{spec.url}"
    try:
        headers = await asyncio.to_thread(request_headers, secret)
    except Refused as refused:
        fetched.unreadable(doc_id, refused.reason, refused.message, now)
        return fetched
    headers |= conditional_headers(validator)
    limit = source.max_document_bytes
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=spec.timeout_seconds)) as session,
            session.get(spec.url, headers=headers) as response,
        ):
            if response.status == 304:
                fetched.confirm(doc_id)
                return fetched
            if response.status != 200:
                reason = _STATUS_REASONS.get(response.status, "Unreachable")
                fetched.unreadable(doc_id, reason, f"HTTP {response.status} from {spec.url}", now)
                return fetched
            if response.content_length is not None and response.content_length > limit:
                raise too_large(response.content_length, limit)
            body = bytearray()
            async for piece in response.content.iter_chunked(READ_BYTES):
                body += piece
                if len(body) > limit:
                    raise too_large(len(body), limit)
            content_type = response.headers.get("Content-Type", "")
            received = Validator(
                etag=response.headers.get("ETag", ""), last_modified=response.headers.get("Last-Modified", "")
            )
    except Refused as refused:
        fetched.refuse(doc_id, refused, now)
        return fetched
    except TimeoutError:
        fetched.unreadable(doc_id, "Unreachable", f"no answer within {spec.timeout_seconds:g}s", now)
        return fetched
    except aiohttp.ClientError as exc:
        fetched.unreadable(doc_id, "Unreachable", f"{type(exc).__name__}: {exc}", now)
        return fetched
    try:
        text, title = extract(bytes(body), urlsplit(spec.url).path or spec.url, content_type)
    except Refused as refused:
        fetched.refuse(doc_id, refused, now)
        return fetched
    fetched.documents.append(document(source.name, source.partition, spec.url, spec.url, text, title, now))
    fetched.validators[doc_id] = received
    return fetched
