"""The session's state for caller sound over the agent: which utterance overlaps which agent turn, the
turn paused until its transcript is in, and what each transcript makes the agent do (overlap.py decides
the class; docs/interruptions.md tells the whole story).

The session calls it from the input side (VAD windows) and from the STT loop, and is called back to
stop the agent. No I/O here but the resume timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .. import pipeline_metrics
from ..config import BargeInSpec
from .overlap import Overlap, OverlapParams, OverlapUtterance, classify_overlap
from .turn import AgentTurn


class BargeIn:
    def __init__(
        self,
        spec: BargeInSpec,
        min_speech_ms: float,
        current: Callable[[], AgentTurn | None],
        interrupt: Callable[[], None],
        log: logging.LoggerAdapter[Any],
    ) -> None:
        self.spec = spec
        self.params = OverlapParams.of(spec, min_speech_ms)
        self._current = current  # the agent turn running
        self._interrupt = interrupt  # stops the running turn (flush, cancel, Interruption event)
        self._log = log
        self.voiced_ms = 0.0  # voice in the caller's utterance so far
        self.overlapped: OverlapUtterance | None = None  # the caller's utterance, when it overlaps a turn
        self.hearing: OverlapUtterance | None = None  # the overlapping utterance the STT is hearing
        self.paused: AgentTurn | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def judging(self) -> bool:
        return self.paused is not None or self.hearing is not None

    def new_utterance(self) -> None:
        self.overlapped = None

    def heard(self, voiced_ms: float) -> None:
        """The VAD's voice count of the utterance under way."""
        self.voiced_ms = voiced_ms
        if self.overlapped is not None:
            self.overlapped.voiced_ms = voiced_ms

    def pause(self) -> bool:
        """minSpeechMs of caller speech over the running turn: pause it until the transcript says whether
        to stop. False when it must stop now (no resume configured, or nothing played yet to resume)."""
        turn = self._current()
        if turn is None or turn.interrupted or not self.spec.resume_false_interruptions:
            return False
        if not turn.playback.played_frames:
            return False  # the LLM is still thinking: stop the generation at once, as always
        self.overlapped = OverlapUtterance(turn, self.voiced_ms)
        if self.paused is not turn:
            self._cancel_timer()
            turn.playback.pause()
            self.paused = turn
            self._timer = asyncio.get_running_loop().call_later(
                self.spec.false_interruption_timeout_ms / 1000, self.settle, turn, "resumed"
            )
        return True

    def short_sound(self) -> OverlapUtterance | None:
        """A caller sound ended below minSpeechMs: the overlap to transcribe, when the agent is speaking and
        the sound is long enough to trust (a short cancel phrase must still stop the agent)."""
        turn = self._current()
        if turn is None or turn.interrupted or not self.spec.enabled:
            return None
        if self.voiced_ms < self.spec.cancel_min_speech_ms:
            return None
        return OverlapUtterance(turn, self.voiced_ms)

    def judge(self, text: str, *, final: bool) -> bool:
        """A transcript of the utterance the STT hears. When it overlapped the agent: stop the agent
        (speech, a cancel phrase) or, once final, resume it (backchannel, noise). True when the transcript
        goes on as the caller's (always, for an utterance that did not overlap)."""
        overlap = self.hearing
        if overlap is None:
            return True
        if final:
            self.hearing = None
        kind = classify_overlap(text, overlap.voiced_ms, self.params, partial=not final)
        if kind.interrupts:
            if self._current() is overlap.turn:
                self._interrupt()
        elif final and self.overlapped in (None, overlap):  # no newer sound is being judged
            self.settle(overlap.turn, "resumed")
        if final:
            pipeline_metrics.OVERLAPS_TOTAL.labels(kind.value).inc()
            self._log.info("caller said %r over the agent: %s", text, kind.value)
        return kind is Overlap.SPEECH

    def settle(self, turn: AgentTurn, outcome: str) -> None:
        """End the pause of ``turn``, if it is paused: its audio goes on (resumed) or was flushed."""
        if self.paused is not turn:
            return
        self.paused = None
        self._cancel_timer()
        turn.playback.resume()
        pipeline_metrics.AGENT_PAUSES_TOTAL.labels(outcome).inc()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
