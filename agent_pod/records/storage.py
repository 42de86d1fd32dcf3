"""Where recordings go: a volume directory, or an S3-compatible bucket as the call goes.

Volume: ``<dir>/<agent>/<YYYY-MM-DD>/<session>-<HHMMSSmmm>Z.wav``, written in place (see recording.py).

S3: the WAV is written to a local spool directory exactly as on a volume, and every flushed segment
(the bytes one flush appended) is uploaded at once as its own object,
``<prefix><agent>/<YYYY-MM-DD>/<session>-<time>Z.wav.parts/<000001..>``. S3 multipart parts must be
5 MiB (a minute of audio), too coarse for "lose at most the last second", so the parts are plain
objects. The parts concatenated in order are the file as of its last uploaded flush (the first part
starts with the WAV header). When the call ends, the finished file goes up as
``<session>-<time>Z.wav`` and its parts are deleted. If the pod dies mid-call, the parts stay: the
retention sweep of any pod of the agent assembles parts that have not grown for ``ORPHAN_SECONDS``
into the final object (header sizes fixed), so such a recording loses at most its last unuploaded
segment.

A store that is down never stops a call: uploads retry with capped exponential backoff, in order;
segments wait in the spool file, which is deleted only once the final object is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from ..config import RecordingSpec
from ..providers.credentials import resolve_credential
from . import metrics
from .backoff import backoff
from .paths import RECORDINGS_DIR
from .recording import CallRecording, RecordingInfo, Segment
from .retention import Stored, expired, sweep_directory

log = logging.getLogger(__name__)

PARTS = ".parts/"
ORPHAN_SECONDS = 600.0  # parts of a call not grown for this long: its pod is gone
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 10.0
CLOSE_WAIT = 10.0
WAV_HEADER = 44  # Python's wave writes the canonical 44-byte PCM header

_uploads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="recording-upload")


def recording_name(agent: str, session_id: str, started: datetime) -> str:
    """A call resumed or moved to another pod is recorded again from there: the start time (UTC, ms)
    keeps each part of the call in its own file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", session_id)
    return f"{agent}/{started:%Y-%m-%d}/{safe}-{started:%H%M%S}{started.microsecond // 1000:03d}Z.wav"


def fix_wav_sizes(data: bytes) -> bytes:
    """A WAV of concatenated flush segments, its RIFF and data sizes set to what is there (whole frames)."""
    frames = (len(data) - WAV_HEADER) // 4 * 4  # stereo 16-bit: 4 bytes a frame
    body = data[: WAV_HEADER + frames]
    return body[:4] + struct.pack("<I", len(body) - 8) + body[8:40] + struct.pack("<I", frames) + body[44:]


class RecordingStore:
    """Volume storage; the base of S3 storage."""

    storage = "volume"

    def __init__(self, spec: RecordingSpec, agent: str, root: Path) -> None:
        self.spec = spec
        self.agent = agent
        self.root = root

    def open(self, session_id: str, started: datetime | None = None) -> CallRecording:
        name = recording_name(self.agent, session_id, started or datetime.now(UTC))
        return CallRecording(session_id, self.spec, self.root / name, self.location(name))

    def location(self, name: str) -> str:
        return str(self.root / name)

    async def finished(self, recording: CallRecording, info: RecordingInfo | None) -> None:
        """The call ended (its file is closed)."""

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def sweep(self, now: datetime | None = None) -> list[str]:
        """Apply retention; the names deleted."""
        now = now or datetime.now(UTC)
        return await asyncio.to_thread(sweep_directory, self.root, now, self.spec.retention_days)

    async def aclose(self) -> None:
        pass


class S3Store(RecordingStore):
    """``root`` is the local spool directory."""

    storage = "s3"

    def __init__(self, spec: RecordingSpec, agent: str, root: Path, client: Minio | None = None) -> None:
        super().__init__(spec, agent, root)
        assert spec.s3 is not None
        self.s3 = spec.s3
        self.bucket = spec.s3.bucket
        self.prefix = spec.s3.prefix
        self.client = client or make_client(spec)
        self._uploaders: dict[Path, _Uploader] = {}  # by spool file: one per recording
        self.backoff_cap = BACKOFF_CAP

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def key(self, recording: CallRecording) -> str:
        return self.prefix + str(recording.path.relative_to(self.root))

    def open(self, session_id: str, started: datetime | None = None) -> CallRecording:
        recording = super().open(session_id, started)
        uploader = _Uploader(self, recording)
        recording.on_segment = uploader.add
        self._uploaders[recording.path] = uploader
        return recording

    async def finished(self, recording: CallRecording, info: RecordingInfo | None) -> None:
        uploader = self._uploaders.get(recording.path)
        if uploader is not None:
            uploader.finish(info)

    async def wait_uploaded(self, recording: CallRecording) -> None:
        """Until the recording's final object is up."""
        uploader = self._uploaders.get(recording.path)
        if uploader is not None:
            await asyncio.shield(uploader.task)

    def backlog(self, recording: CallRecording) -> int:
        """Flushed segments of the recording not uploaded yet."""
        uploader = self._uploaders.get(recording.path)
        return len(uploader.pending) if uploader else 0

    async def start(self) -> None:
        await super().start()
        if self.s3.lifecycle_rule:
            try:
                await asyncio.to_thread(self._set_lifecycle)
            except Exception as exc:  # not every S3-compatible server has lifecycle rules
                log.warning(
                    "recording bucket %s: no lifecycle rule (%s); the sweep applies", self.bucket, exc
                )

    def _set_lifecycle(self) -> None:
        rule_id = f"voicefleet-{self.agent}"[:255]
        try:
            config = self.client.get_bucket_lifecycle(self.bucket)
        except S3Error as exc:
            if exc.code != "NoSuchLifecycleConfiguration":
                raise
            config = None
        rules = [r for r in (config.rules if config else []) if r.rule_id != rule_id]
        rules.append(
            Rule(
                ENABLED,
                rule_filter=Filter(prefix=f"{self.prefix}{self.agent}/"),
                rule_id=rule_id,
                expiration=Expiration(days=self.spec.retention_days),
            )
        )
        self.client.set_bucket_lifecycle(self.bucket, LifecycleConfig(rules))

    async def sweep(self, now: datetime | None = None) -> list[str]:
        now = now or datetime.now(UTC)
        await super().sweep(now)  # spool files of calls whose upload never finished
        return await asyncio.to_thread(self._sweep_bucket, now)

    def _sweep_bucket(self, now: datetime) -> list[str]:
        base = f"{self.prefix}{self.agent}/"
        objects = [
            Stored(name=o.object_name, modified=o.last_modified)
            for o in self.client.list_objects(self.bucket, prefix=base, recursive=True)
            if o.object_name is not None and o.last_modified is not None
        ]
        live = {u.key for u in self._uploaders.values()}
        self._recover_orphans(objects, now, live)
        gone = expired(objects, now, self.spec.retention_days)
        self._delete(gone)
        metrics.RETENTION_DELETED_TOTAL.labels("s3").inc(len(gone))
        return gone

    def _recover_orphans(self, objects: list[Stored], now: datetime, live: set[str]) -> None:
        finals = {o.name for o in objects if PARTS not in o.name}
        parts: dict[str, list[Stored]] = {}
        for o in objects:
            if PARTS in o.name:
                parts.setdefault(o.name.split(PARTS)[0], []).append(o)
        for key, items in parts.items():
            if key in live:
                continue
            names = sorted(o.name for o in items)
            if key not in finals:
                if now - max(o.modified for o in items) < timedelta(seconds=ORPHAN_SECONDS):
                    continue  # maybe still being written by a pod
                self.assemble(key, names)
            self._delete(names)
            objects[:] = [o for o in objects if o.name not in set(names)]

    def assemble(self, key: str, part_names: list[str]) -> None:
        """The final object of a call whose pod died, from its uploaded parts."""
        data = b"".join(self._get(name) for name in sorted(part_names))
        body = fix_wav_sizes(data)
        self.client.put_object(self.bucket, key, io.BytesIO(body), len(body), content_type="audio/wav")
        log.warning("recording %s assembled from %d parts left by a dead pod", key, len(part_names))

    def _get(self, name: str) -> bytes:
        response = self.client.get_object(self.bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _delete(self, names: list[str]) -> None:
        if names:
            for error in self.client.remove_objects(self.bucket, (DeleteObject(n) for n in names)):
                log.warning("recording object %s not deleted: %s", error.name, error.message)

    async def aclose(self) -> None:
        """Give the last uploads ``CLOSE_WAIT`` seconds; what is left stays in the spool and the bucket's
        parts (assembled by a later sweep)."""
        tasks = [u.task for u in self._uploaders.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        for uploader in list(self._uploaders.values()):
            uploader.task.cancel()
        await asyncio.gather(*(u.task for u in self._uploaders.values()), return_exceptions=True)


class _Uploader:
    """Uploads one call's segments in order as they are flushed, then its final object."""

    def __init__(self, store: S3Store, recording: CallRecording) -> None:
        self.store = store
        self.recording = recording
        self.key = store.key(recording)
        self.pending: deque[Segment] = deque()
        self.info: RecordingInfo | None = None
        self.finished = False
        self._wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"upload-{recording.session_id}")

    def add(self, segment: Segment) -> None:
        self.pending.append(segment)
        metrics.UPLOAD_BACKLOG.inc()
        self._wake.set()

    def finish(self, info: RecordingInfo | None) -> None:
        self.info = info
        self.finished = True
        self._wake.set()

    async def _run(self) -> None:
        try:
            while not self.finished:
                await self._wake.wait()
                self._wake.clear()
                while self.pending and not self.finished:
                    segment = self.pending[0]
                    await self._retrying("segment", self._put_segment, segment)
                    self.pending.popleft()
                    metrics.UPLOAD_BACKLOG.dec()
            if self.info is not None:
                await self._retrying("final", self._put_final)
                self.recording.path.unlink(missing_ok=True)  # the spool copy, now in the bucket
        finally:
            metrics.UPLOAD_BACKLOG.dec(len(self.pending))
            self.store._uploaders.pop(self.recording.path, None)

    async def _retrying(self, kind: str, upload: object, *args: object) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            if attempt:
                metrics.UPLOAD_RETRIES_TOTAL.labels(kind).inc()
            try:
                await loop.run_in_executor(_uploads, upload, *args)  # type: ignore[arg-type]
            except Exception as exc:
                attempt += 1
                metrics.UPLOAD_FAILURES_TOTAL.labels(kind).inc()
                delay = backoff(attempt, BACKOFF_FIRST, self.store.backoff_cap)
                log.warning(
                    "recording %s: %s upload failed (attempt %d, retry in %.1fs): %s",
                    self.key,
                    kind,
                    attempt,
                    delay,
                    exc,
                    extra={"session_id": self.recording.session_id},
                )
                if kind == "segment" and self.finished:
                    return  # the final object supersedes it
                await asyncio.sleep(delay)
                continue
            metrics.UPLOADS_TOTAL.labels(kind).inc()
            return

    def _put_segment(self, segment: Segment) -> None:
        with open(self.recording.path, "rb") as f:
            f.seek(segment.offset)
            data = f.read(segment.length)
        name = f"{self.key}{PARTS}{segment.index:06d}"
        self.store.client.put_object(self.store.bucket, name, io.BytesIO(data), len(data))

    def _put_final(self) -> None:
        client, bucket = self.store.client, self.store.bucket
        client.fput_object(bucket, self.key, str(self.recording.path), content_type="audio/wav")
        prefix = f"{self.key}{PARTS}"
        names = [o.object_name for o in client.list_objects(bucket, prefix=prefix) if o.object_name]
        with contextlib.suppress(Exception):  # leftovers are removed by the sweep
            self.store._delete(names)


def make_client(spec: RecordingSpec) -> Minio:
    s3 = spec.s3
    assert s3 is not None
    url = urlsplit(s3.endpoint)
    # Our own retries with backoff; the client's would block an upload thread for long.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3.0, read=20.0), retries=urllib3.Retry(total=0), maxsize=8
    )
    return Minio(
        url.netloc,
        access_key=resolve_credential(s3.access_key_secret_ref, "VOICEFLEET_S3_ACCESS_KEY"),
        secret_key=resolve_credential(s3.secret_key_secret_ref, "VOICEFLEET_S3_SECRET_KEY"),
        secure=url.scheme == "https",
        region=s3.region or None,
        http_client=http,
    )


def recordings_dir() -> Path:
    return Path(os.environ.get("VOICEFLEET_RECORDINGS_DIR", RECORDINGS_DIR))


def build_store(spec: RecordingSpec, agent: str, directory: Path) -> RecordingStore:
    if spec.storage == "s3":
        return S3Store(spec, agent, directory)
    return RecordingStore(spec, agent, directory)
