"""The output side of one agent turn: 20 ms frames queued for playout, tagged with the text they speak.

A frame handed to the transport counts as played. Each TTS piece knows how
many of its samples were played, so the words the caller actually heard can be
computed at any moment (proportional to characters within a piece, cut at a
word boundary).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Speaking rate used to estimate a piece's length while its audio is still
# being synthesized (espeak-ng's default ~175 wpm is ~70 ms per character).
DEFAULT_MS_PER_CHAR = 70.0


@dataclass
class SpokenPiece:
    """One piece of text sent to TTS, and how much of its audio was produced and played."""

    text: str
    round: int
    produced_samples: int = 0
    played_samples: int = 0
    done: bool = False

    def played_fraction(self, estimated_samples: float) -> float:
        if self.done:
            total = float(self.produced_samples)
        else:
            total = max(float(self.produced_samples), estimated_samples)
        if total <= 0:
            return 0.0
        return min(1.0, self.played_samples / total)


def cut_text(text: str, fraction: float) -> str:
    """The words of ``text`` spoken when ``fraction`` of its audio has played (by character position)."""
    if fraction >= 1.0:
        return text
    if fraction <= 0.0 or not text:
        return ""
    words = text.split()
    total = sum(len(w) for w in words) + len(words) - 1
    kept: list[str] = []
    pos = 0
    for word in words:
        pos += len(word)
        # A word counts as heard once most of it was played.
        if pos - len(word) / 2 > fraction * total:
            break
        kept.append(word)
        pos += 1
    return " ".join(kept)


@dataclass
class _Frame:
    pcm: bytes
    piece: SpokenPiece
    samples: int


@dataclass
class TurnPlayback:
    """Frames of one agent turn at the output rate; ``closed`` once no more audio will be added."""

    sample_rate: int
    frame_samples: int
    keep_played_audio: bool = False
    pieces: list[SpokenPiece] = field(default_factory=list)
    played_frames: int = 0
    closed: bool = False
    played_audio: bytearray = field(default_factory=bytearray)
    # Held while caller sound that may be a false interruption is judged: nothing is pulled (so
    # nothing counts as played) until resume() or flush().
    paused: bool = False
    _frames: deque[_Frame] = field(default_factory=deque)
    _pulled: list[tuple[SpokenPiece, int]] = field(default_factory=list)  # for unplay()
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _ms_per_char: float = DEFAULT_MS_PER_CHAR
    # Called once the turn's first frame is queued, so a transport can send it without waiting for
    # the next playout tick.
    on_first_frame: Callable[[], None] | None = None

    def add_piece(self, text: str, round_: int) -> SpokenPiece:
        piece = SpokenPiece(text=text, round=round_)
        self.pieces.append(piece)
        return piece

    def push(self, piece: SpokenPiece, frame: bytes, samples: int) -> None:
        """Queue one frame carrying ``samples`` samples of ``piece`` (the rest is padding)."""
        if self.closed:
            return
        piece.produced_samples += samples
        first = self.played_frames == 0 and not self._frames
        self._frames.append(_Frame(frame, piece, samples))
        if first and self.on_first_frame is not None:
            self.on_first_frame()

    def piece_done(self, piece: SpokenPiece) -> None:
        piece.done = True
        if piece.text and piece.produced_samples:
            # Learn this voice's rate for the estimates of the pieces still being synthesized.
            self._ms_per_char = piece.produced_samples * 1000.0 / self.sample_rate / len(piece.text)

    @property
    def queued_frames(self) -> int:
        return len(self._frames)

    def pull(self) -> bytes | None:
        if self.paused or not self._frames:
            return None
        frame = self._frames.popleft()
        self._room.set()
        frame.piece.played_samples += frame.samples
        self._pulled.append((frame.piece, frame.samples))
        self.played_frames += 1
        if self.keep_played_audio:
            self.played_audio += frame.pcm
        if self.closed and not self._frames:
            self._drained.set()
        return frame.pcm

    def close(self) -> None:
        """No more audio will be added (the generation finished)."""
        self.closed = True
        if not self._frames:
            self._drained.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def flush(self) -> int:
        """Drop every queued frame (barge-in); returns how many were dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        self.closed = True
        self._drained.set()
        self._room.set()
        return dropped

    def unplay(self, frames: int) -> int:
        """The newest ``frames`` pulled frames were not heard after all (a phone carrier dropped them from
        its buffer at a barge-in): they no longer count as played. Returns how many were taken back."""
        frames = max(0, min(frames, len(self._pulled)))
        for _ in range(frames):
            piece, samples = self._pulled.pop()
            piece.played_samples -= samples
        self.played_frames -= frames
        if self.keep_played_audio and frames:
            del self.played_audio[-frames * self.frame_samples * 2 :]
        return frames

    async def wait_for_room(self, max_frames: int) -> None:
        """Wait until fewer than ``max_frames`` frames are queued (or the playback was flushed)."""
        while len(self._frames) >= max_frames and not self.closed:
            self._room.clear()
            await self._room.wait()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    @property
    def played_ms(self) -> int:
        return self.played_frames * self.frame_samples * 1000 // self.sample_rate

    def played_text(self, round_: int | None = None) -> str:
        parts: list[str] = []
        for piece in self.pieces:
            if round_ is not None and piece.round != round_:
                continue
            estimate = len(piece.text) * self._ms_per_char * self.sample_rate / 1000.0
            heard = cut_text(piece.text, piece.played_fraction(estimate))
            if heard:
                parts.append(heard)
            if heard != piece.text:
                break  # nothing after a partly played piece was heard
        return " ".join(parts)

    def sent_text(self, round_: int | None = None) -> str:
        return " ".join(p.text for p in self.pieces if round_ is None or p.round == round_)
