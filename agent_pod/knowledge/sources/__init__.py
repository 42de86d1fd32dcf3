"""Fetching a source's documents: one module per kind (configmap, files, http, s3)."""

from __future__ import annotations

import asyncio

from ..spec import SourceSpec
from .configmap import fetch_config_map
from .fetched import Fetched, Validator
from .files import fetch_files
from .http import fetch_http
from .mounts import Mounts
from .s3 import fetch_s3


async def fetch(source: SourceSpec, mounts: Mounts, validators: dict[str, Validator], now: float) -> Fetched:
    """The source's documents; its problems are in the result's errors, never raised."""
    if source.config_map is not None:
        directory = mounts.config_map_dir(source.name)
        return await asyncio.to_thread(fetch_config_map, source, source.config_map, directory, now)
    if source.files is not None:
        volume = mounts.files_dir(source.name, claim=source.files.claim_name is not None)
        return await asyncio.to_thread(fetch_files, source, source.files, volume, validators, now)
    if source.http is not None:
        ref = source.http.headers_secret_ref
        secret = None if ref is None else mounts.secret_file(ref.name, ref.key)
        validator = validators.get(f"{source.name}/{source.http.url}")
        return await fetch_http(source, source.http, secret, validator, now)
    if source.s3 is not None:
        ref_name = source.s3.credentials_secret_ref
        credentials = None if ref_name is None else mounts.secrets / ref_name
        return await fetch_s3(source, source.s3, credentials, validators, now)
    fetched = Fetched(complete=False)
    fetched.error("Malformed", "the source names no configMap, files, http or s3", now)
    return fetched
