"""What a caller saw during a call: events, agent audio, and answer latencies measured on the caller side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from .caller_audio import frame_level

# Agent audio louder than this (peak PCM16) counts as speech; decoded Opus silence stays far below.
AUDIBLE_LEVEL = 200


class TurnLatency(BaseModel):
    """From the caller's end of speech to the first audible agent frame received."""

    speech_end_index: int
    latency_ms: float


class CallSummary(BaseModel):
    session_id: str = ""
    resume_token: str | None = None
    transcripts: list[str] = Field(default_factory=list, description="Final user transcripts.")
    agent_texts: list[str] = Field(default_factory=list, description="Final agent texts.")
    turn_metrics: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    ended: str | None = None
    audio_frames: int = 0
    audible_frames: int = 0
    peak_level: int = 0
    latencies: list[TurnLatency] = Field(default_factory=list)


class CallRecorder:
    """Fed by a transport client; waited on by tests, the CLI and benchmarks."""

    def __init__(self, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.summary = CallSummary()
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.audible_times: list[float] = []
        self._marks: list[tuple[int, float]] = []
        self._changed = asyncio.Event()
        self._on_event = on_event

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        self.events.append((now, kind, fields))
        s = self.summary
        if kind == "session_started":
            s.session_id = fields.get("session_id", s.session_id)
            s.resume_token = fields.get("resume_token") or s.resume_token
        elif kind == "user_transcript" and fields.get("final"):
            s.transcripts.append(fields.get("text", ""))
        elif kind == "agent_text" and fields.get("final"):
            s.agent_texts.append(fields.get("played_text") or fields.get("text", ""))
        elif kind == "turn_metrics":
            s.turn_metrics.append(fields)
        elif kind == "error":
            s.errors.append(f"{fields.get('code', '')}: {fields.get('message', '')}")
        elif kind == "session_ended":
            s.ended = fields.get("reason", "")
        if self._on_event is not None:
            self._on_event(kind, fields)
        self._wake()

    def audio(self, frame: bytes, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        s = self.summary
        s.audio_frames += 1
        level = frame_level(frame)
        if level > s.peak_level:
            s.peak_level = level
        if level >= AUDIBLE_LEVEL:
            s.audible_frames += 1
            self.audible_times.append(now)
            self._settle_marks(now)
        self._wake()

    def mark_speech_end(self, index: int, at: float | None = None) -> None:
        """The caller just finished saying something: the next audible agent frame answers it."""
        self._marks.append((index, time.monotonic() if at is None else at))

    def _settle_marks(self, now: float) -> None:
        while self._marks:
            index, at = self._marks.pop(0)
            self.summary.latencies.append(TurnLatency(speech_end_index=index, latency_ms=(now - at) * 1000))

    def _wake(self) -> None:
        self._changed.set()

    async def wait(self, condition: Callable[[CallSummary], bool], within: float) -> CallSummary:
        """Wait until ``condition(summary)`` holds; TimeoutError after ``within`` s."""
        deadline = time.monotonic() + within
        while not condition(self.summary):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"call condition not met within {within:g} s: {self.summary!r}")
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                continue
        return self.summary
