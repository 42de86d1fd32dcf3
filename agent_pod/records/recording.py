"""The recording of one call: a stereo 16-bit PCM WAV, caller on the left, the agent as played on the right.

The taps on the event loop only note each chunk and where it lies on the call's clock (``caller``
from ``push_audio``, ``agent`` from every playout tick); every ``flushSeconds`` a writer thread
resamples, lays both channels out to the same length, interleaves and appends them, and Python's
``wave`` patches the RIFF and data sizes after each append (data first, then the header). So the file
on disk is a valid WAV up to its last flush whatever happens to the process after it, SIGKILL
included (the page cache survives the process; a node losing power is not covered: no fsync).

A flush writes up to ``HOLDBACK`` before now, so caller audio delayed by the network still lands
where it belongs; the rest waits for the next flush. A phone carrier buffers agent audio and may drop
what it has not played at a barge-in (``clear``): the agent frames it has not yet confirmed played
(``unconfirmed``) are kept back from the file, up to ``MAX_AGENT_HOLD_SECONDS``, so ``unplay_agent``
can still turn the ones it dropped into silence. ``finish`` writes everything, closes the file
and returns its location and SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from pydantic import BaseModel

from ..audio.resample import StreamResampler
from ..config import RecordingSpec
from . import metrics
from .alignment import ArrivalPlacer

log = logging.getLogger(__name__)

FRAME_MS = 20
HOLDBACK_SECONDS = 0.25  # longer than any jitter the placer absorbs
WINDOW_SECONDS = 0.2  # the placer's anchor window (see alignment.py)
DISCONTINUITY_SECONDS = 0.08  # a later arrival than this is a gap, not jitter
# Agent audio a carrier has not confirmed played is kept back from the file at most this long (its
# marks may never come: the recording must still reach the disk). The carrier's own queue is 2 s.
MAX_AGENT_HOLD_SECONDS = 2.0
LEFT, RIGHT = 0, 1

# One pool for every call of the pod: a flush is short (a second of audio), calls await their own
# flushes one at a time, so their writes stay in order.
_writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recording")


class RecordingInfo(BaseModel):
    """A finished recording: where it is (a path on the volume, or the bucket key), its SHA-256 and length."""

    location: str
    sha256: str
    duration_ms: int
    bytes: int
    sample_rate: int


class _Chunk(NamedTuple):
    """Audio noted on the loop: ``start`` on the call's clock (recording samples), ``nominal`` its length
    there; ``voiced`` for an agent frame (not the silence of a tick without one)."""

    channel: int
    start: int
    pcm: bytes
    rate: int
    nominal: int
    voiced: bool


class Segment(BaseModel):
    """Bytes ``[offset, offset + length)`` of the WAV file, appended by one flush (index from 1)."""

    index: int
    offset: int
    length: int


class _Channel:
    """Writer-thread side of one channel: resampled audio not yet written, from the file's end on."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.pending = np.zeros(0, dtype=np.int16)
        self.resampler: StreamResampler | None = None
        self.next_start = -1  # where the stream continues (placer samples); elsewhere: a gap

    def add(self, written: int, start: int, pcm: bytes, rate: int, nominal: int) -> None:
        if self.resampler is None or self.resampler.in_rate != rate:
            self.resampler = StreamResampler(rate, self.rate)
        audio = np.frombuffer(self.resampler.process(pcm), dtype="<i2")
        # Continuous: right after the stream's previous chunk (the resampler's few ms of delay stay
        # constant); after a gap: at its place on the call's clock.
        at = len(self.pending)
        if start != self.next_start:
            at = max(at, start - written)
        self.next_start = start + nominal
        self._put(at, audio)

    def end(self, written: int) -> int:
        return written + len(self.pending)

    def _put(self, at: int, audio: np.ndarray) -> None:
        need = at + len(audio)
        if need > len(self.pending):
            self.pending = np.concatenate([self.pending, np.zeros(need - len(self.pending), np.int16)])
        self.pending[at:need] = audio

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int16)
        k = min(n, len(self.pending))
        out[:k] = self.pending[:k]
        self.pending = self.pending[k:]
        return out


class _Writer:
    """Runs in the writer thread only."""

    def __init__(self, path: Path, rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rate = rate
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - open for the call's length
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 - likewise
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self.written = 0  # frames in the file
        self.channels = (_Channel(rate), _Channel(rate))
        self._file_end = 0

    def flush(self, chunks: list[_Chunk], upto: int | None) -> Segment | None:
        """Append the chunks' audio up to frame ``upto`` (None: all of it); returns the bytes appended."""
        started = time.perf_counter()
        for chunk in chunks:
            self.channels[chunk.channel].add(self.written, chunk.start, chunk.pcm, chunk.rate, chunk.nominal)
        if upto is None:
            upto = max(c.end(self.written) for c in self.channels)
        n = max(0, upto - self.written)
        if n == 0 and self._file_end:
            return None
        frames = np.column_stack([c.take(n) for c in self.channels]).astype("<i2").tobytes()
        offset = self._file_end
        self._wav.writeframes(frames)  # writes the data, then patches the RIFF and data sizes
        self._file.flush()
        self.written += n
        self._file_end = self._file.tell()
        metrics.BYTES_TOTAL.inc(len(frames))
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        return Segment(index=0, offset=offset, length=self._file_end - offset)

    def close(self) -> str:
        """Close the file; its SHA-256."""
        self._wav.close()
        self._file.close()
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while block := f.read(1 << 16):
                digest.update(block)
        return digest.hexdigest()


def _split_held(chunks: list[_Chunk], held: int | None) -> tuple[list[_Chunk], list[_Chunk]]:
    """(what a flush may take, the agent audio from ``held`` on that stays behind)."""
    if held is None:
        return chunks, []
    kept = [c for c in chunks if c.channel == RIGHT and c.start >= held]
    return [c for c in chunks if c.channel != RIGHT or c.start < held], kept


class CallRecording:
    """One call's recording. ``on_segment`` is called on the loop with each flushed segment (uploads)."""

    def __init__(
        self,
        session_id: str,
        spec: RecordingSpec,
        path: Path,
        location: str,
        on_segment: Callable[[Segment], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = session_id
        self.rate = spec.sample_rate
        self.flush_seconds = spec.flush_seconds
        self.path = path
        self.location = location
        self.on_segment = on_segment
        self._clock = clock
        self._t0 = clock()
        window, gap = int(WINDOW_SECONDS * self.rate), int(DISCONTINUITY_SECONDS * self.rate)
        self._placers = (ArrivalPlacer(window, gap), ArrivalPlacer(window, gap))
        self._chunks: list[_Chunk] = []
        # How many of the newest agent frames the caller's carrier has not confirmed played (set by the
        # session from its transport); those are kept back so a barge-in can still take them out.
        self.unconfirmed: Callable[[], int] = lambda: 0
        self._writer: _Writer | None = None
        self._segments = 0
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self.info: RecordingInfo | None = None
        self.failed = False
        self._finishing = False

    def now(self) -> int:
        """The call's clock, in recording samples."""
        return round((self._clock() - self._t0) * self.rate)

    def ms(self, position: int) -> int:
        return position * 1000 // self.rate

    async def start(self) -> None:
        self._writer = await asyncio.get_running_loop().run_in_executor(
            _writer, _Writer, self.path, self.rate
        )
        metrics.RECORDINGS_ACTIVE.inc()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"recording-{self.session_id}")

    def caller(self, pcm: bytes, rate: int) -> None:
        """Caller audio as it reached the pod (it ended now)."""
        if pcm and self._open():
            self._add(LEFT, pcm, rate, self.now())

    def agent(self, frame: bytes | None, rate: int) -> int | None:
        """One playout tick of the agent's audio (None: silence), starting now; returns where the frame
        starts in the recording, in ms (None for silence)."""
        if not self._open():
            return None
        pcm = frame if frame is not None else bytes(rate * FRAME_MS // 1000 * 2)
        start = self._add(RIGHT, pcm, rate, self.now() + self.rate * FRAME_MS // 1000, frame is not None)
        return self.ms(start) if frame is not None else None

    def unplay_agent(self, frames: int) -> int | None:
        """The newest ``frames`` agent frames were never played (a carrier dropped them at a barge-in):
        they become silence. Returns where the first of them starts (ms), None if none was left to take
        back (those older than ``MAX_AGENT_HOLD_SECONDS`` may already be in the file)."""
        first: int | None = None
        for i in range(len(self._chunks) - 1, -1, -1):
            if frames <= 0:
                break
            chunk = self._chunks[i]
            if chunk.channel == RIGHT and chunk.voiced:
                self._chunks[i] = chunk._replace(pcm=bytes(len(chunk.pcm)), voiced=False)
                first = chunk.start
                frames -= 1
        return None if first is None else self.ms(first)

    def _open(self) -> bool:
        return self._writer is not None and not self.failed and not self._finishing

    def _add(self, channel: int, pcm: bytes, rate: int, end_at: int, voiced: bool = False) -> int:
        nominal = len(pcm) // 2 * self.rate // rate
        start = self._placers[channel].place(end_at, nominal)
        self._chunks.append(_Chunk(channel, start, pcm, rate, nominal, voiced))
        return start

    def _held_from(self) -> int | None:
        """Where the agent audio the carrier may still drop starts (None: nothing held)."""
        pending = self.unconfirmed()
        if pending <= 0:
            return None
        held: int | None = None
        for chunk in reversed(self._chunks):
            if chunk.channel == RIGHT and chunk.voiced:
                held = chunk.start
                pending -= 1
                if pending == 0:
                    break
        if held is None:
            return None
        return max(held, self.now() - int(MAX_AGENT_HOLD_SECONDS * self.rate))

    async def flush(self, final: bool = False) -> None:
        async with self._flushing:
            if self._writer is None:
                return
            upto: int | None = None
            if final:
                chunks, self._chunks = self._chunks, []
            else:
                upto = max(0, self.now() - int(HOLDBACK_SECONDS * self.rate))
                held = self._held_from()
                if held is not None:
                    upto = min(upto, held)
                # Agent audio from the held point on stays here, where unplay_agent can still reach it.
                chunks, self._chunks = _split_held(self._chunks, held)
                for placer in self._placers:
                    placer.skip_to(upto)  # what arrives later goes after the written part
            loop = asyncio.get_running_loop()
            segment = await loop.run_in_executor(_writer, self._writer.flush, chunks, upto)
            if segment is not None and self.on_segment is not None:
                self._segments += 1
                self.on_segment(segment.model_copy(update={"index": self._segments}))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                # Shielded: finish() cancels this loop, never a flush the writer thread is in the
                # middle of (its final flush waits for the lock instead).
                await asyncio.shield(self.flush())
            except Exception:
                # A full or broken volume must not end the call: stop recording it, say so.
                self.failed = True
                self._chunks.clear()
                log.exception("recording of %s failed; the call goes on unrecorded", self.session_id)
                return

    async def finish(self) -> RecordingInfo | None:
        """Write everything, close the file; its location, SHA-256 and length (None if recording failed).
        Idempotent."""
        if self.info is not None or self._writer is None or self._finishing:
            return self.info
        self._finishing = True
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        metrics.RECORDINGS_ACTIVE.dec()
        loop = asyncio.get_running_loop()
        writer = self._writer
        try:
            if not self.failed:
                await self.flush(final=True)
            sha = await loop.run_in_executor(_writer, writer.close)
        except Exception:
            log.exception("recording of %s could not be finished", self.session_id)
            self.failed = True
            return None
        finally:
            self._writer = None
        size = self.path.stat().st_size
        self.info = RecordingInfo(
            location=self.location,
            sha256=sha,
            duration_ms=self.ms(writer.written),
            bytes=size,
            sample_rate=self.rate,
        )
        return self.info
