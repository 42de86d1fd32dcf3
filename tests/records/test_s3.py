"""Recordings in a real S3-compatible bucket: segments as the call goes, the final object, retries while
the server is down, a dead pod's parts assembled, retention."""

from __future__ import annotations

import asyncio
import hashlib
import io
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from minio import Minio
from prometheus_client import REGISTRY

from agent_pod.config import RecordingSpec
from agent_pod.records.recording import CallRecording
from agent_pod.records.storage import ORPHAN_SECONDS, PARTS, S3Store
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support.wait import async_wait_for

TONE = (np.sin(np.arange(320) * 2 * np.pi * 300 / 16000) * 8000).astype("<i2").tobytes()


def spec(server: S3Server, bucket: str) -> RecordingSpec:
    return RecordingSpec.model_validate(
        {
            "enabled": True,
            "storage": "s3",
            "flushSeconds": 30,  # the tests flush by hand
            "retentionDays": 30,
            "s3": {
                "endpoint": server.endpoint,
                "bucket": bucket,
                "prefix": "rec/",
                "accessKeySecretRef": {"name": "s3", "key": "access"},
                "secretKeySecretRef": {"name": "s3", "key": "secret"},
            },
        }
    )


@pytest.fixture(autouse=True)
def s3_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    creds = tmp_path / "creds" / "s3"
    creds.mkdir(parents=True)
    (creds / "access").write_text(ACCESS_KEY)
    (creds / "secret").write_text(SECRET_KEY)
    monkeypatch.setenv("VOICEFLEET_CREDENTIALS_DIR", str(tmp_path / "creds"))
    yield


def names(client: Minio, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in client.list_objects(bucket, recursive=True))


async def speak(recording: CallRecording, seconds: float, now: list[float]) -> None:
    """``seconds`` of call: 20 ms of caller and agent audio per tick, then a flush."""
    for _ in range(int(seconds * 50)):
        now[0] += 0.02
        recording.caller(TONE, 16000)
        recording.agent(TONE, 16000)
    await recording.flush()


def open_recording(store: S3Store, session_id: str, now: list[float]) -> CallRecording:
    recording = store.open(session_id)
    recording._clock = lambda: now[0]  # the call's time runs as fast as the test feeds it
    recording._t0 = 0.0
    return recording


async def test_segments_go_up_as_the_call_goes_and_the_final_object_replaces_them(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    store = S3Store(spec(s3_server, s3_bucket), "desk", tmp_path / "spool")
    await store.start()
    now = [0.0]
    recording = open_recording(store, "call-1", now)
    await recording.start()
    for _ in range(3):
        await speak(recording, 1.0, now)
    parts = await async_wait_for(
        lambda: asyncio.to_thread(lambda: [n for n in names(client, s3_bucket) if PARTS in n][2:]),
        what="three parts uploaded",
    )
    assert parts
    info = await recording.finish()
    assert info is not None
    await store.finished(recording, info)
    await store.wait_uploaded(recording)
    key = info.location.removeprefix(f"s3://{s3_bucket}/")
    assert names(client, s3_bucket) == [key]  # the parts are gone
    body = client.get_object(s3_bucket, key).read()
    assert hashlib.sha256(body).hexdigest() == info.sha256
    with wave.open(io.BytesIO(body)) as w:
        assert w.getnchannels() == 2 and abs(w.getnframes() / 16000 - 3.0) < 0.05
    assert not recording.path.exists()  # the spool copy is deleted once the object is up
    await store.aclose()


async def test_uploads_retry_while_the_server_is_down(tmp_path: Path) -> None:
    server = S3Server()
    server.start()
    try:
        bucket = server.make_bucket()
        store = S3Store(spec(server, bucket), "desk", tmp_path / "spool")
        store.backoff_cap = 0.3
        await store.start()
        now = [0.0]
        recording = open_recording(store, "call-2", now)
        await recording.start()
        await speak(recording, 1.0, now)
        await async_wait_for(
            lambda: asyncio.to_thread(lambda: names(server.client(), bucket)), what="part 1 uploaded"
        )
        failures = failed_attempts()
        server.stop()
        for _ in range(3):  # the call goes on while the store is down
            await speak(recording, 1.0, now)
        await async_wait_for(
            lambda: _async(failed_attempts() >= failures + 2),
            what="failed attempts",
        )
        assert store.backlog(recording) == 3
        assert recording.path.exists()
        server.start()
        await async_wait_for(
            lambda: _async(store.backlog(recording) == 0), timeout=15, what="backlog uploaded"
        )
        parts = [n for n in names(server.client(), bucket) if PARTS in n]
        assert [p.rsplit("/", 1)[1] for p in parts] == ["000001", "000002", "000003", "000004"]
        info = await recording.finish()
        assert info is not None
        await store.finished(recording, info)
        await store.wait_uploaded(recording)
        assert [n for n in names(server.client(), bucket) if PARTS not in n]
        await store.aclose()
    finally:
        server.close()


def failed_attempts() -> float:
    return REGISTRY.get_sample_value("voicefleet_recording_upload_failures_total", {"kind": "segment"}) or 0.0


async def _async(value: bool) -> bool:
    return value


async def test_a_dead_pods_parts_are_assembled_into_the_recording(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    pod_a = S3Store(spec(s3_server, s3_bucket), "desk", tmp_path / "a")
    now = [0.0]
    recording = open_recording(pod_a, "call-3", now)
    await recording.start()
    for _ in range(4):
        await speak(recording, 1.0, now)
    await async_wait_for(lambda: _async(pod_a.backlog(recording) == 0), what="parts uploaded")
    for uploader in list(pod_a._uploaders.values()):  # the pod dies: nothing more goes up
        uploader.task.cancel()
    await recording.finish()  # (only closes the spool file: the store never hears of it)
    pod_b = S3Store(spec(s3_server, s3_bucket), "desk", tmp_path / "b")
    # Parts fresher than ORPHAN_SECONDS may still be written by a live pod: left alone.
    await pod_b.sweep()
    assert all(PARTS in n for n in names(client, s3_bucket))
    await pod_b.sweep(datetime.now(UTC) + timedelta(seconds=ORPHAN_SECONDS + 1))
    (key,) = names(client, s3_bucket)
    with wave.open(io.BytesIO(client.get_object(s3_bucket, key).read())) as w:
        duration = w.getnframes() / w.getframerate()
    assert 4.0 - 0.3 - 1.0 <= duration <= 4.0  # up to the last flush (minus the flush's holdback)
    assert key.startswith("rec/desk/") and "/call-3-" in key and key.endswith("Z.wav")


async def test_bucket_retention_deletes_only_expired_recordings(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    for name in ("rec/desk/2024-01-01/a.wav", "rec/desk/2024-01-02/b.wav", "rec/other/2024-01-01/c.wav"):
        client.put_object(s3_bucket, name, io.BytesIO(b"x"), 1)
    store = S3Store(spec(s3_server, s3_bucket), "desk", tmp_path / "spool")
    assert await store.sweep(datetime.now(UTC) + timedelta(days=29)) == []
    gone = await store.sweep(datetime.now(UTC) + timedelta(days=31))
    assert gone == ["rec/desk/2024-01-01/a.wav", "rec/desk/2024-01-02/b.wav"]
    assert names(client, s3_bucket) == ["rec/other/2024-01-01/c.wav"]  # another agent's: not ours


async def test_a_server_without_lifecycle_rules_leaves_retention_to_the_sweep(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = S3Store(spec(s3_server, s3_bucket), "desk", tmp_path / "spool")
    await store.start()  # versitygw's posix backend has no lifecycle configuration: not an error
    assert "no lifecycle rule" in caplog.text
