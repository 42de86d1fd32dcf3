"""The speech gate: what of the LLM's text reaches TTS, and when.

Every text piece the chunker cuts passes through the turn's gate, which
releases pieces to the TTS queue strictly in order once each is decided:

- hold: in hold mode, a piece of a round that offers tools waits for the end
  of the model's stream. The chunks carry complete tool calls only at the end
  (the OpenAI provider assembles them at the finish), and text that comes
  first may or may not be followed by a call, so the decision is the stream's
  end. A round that ended with tool calls has its text spoken or dropped per
  ``preamble``; otherwise the held text is released at once. Rounds without
  tools offered are never held.
- supervisor: each piece's check starts when the piece is cut, concurrently
  with the LLM's streaming and with the playout of earlier pieces; the gate
  waits for a verdict only when the piece is next in line. A veto or redirect
  replaces the piece, and the rest of the turn is not spoken (it continues
  the vetoed thought); a round that called tools waits for its verdicts
  first, so a vetoed reply runs no tools.
- fillers: when a round's tools are still running after ``fillerAfterMs``, the
  next filler phrase (rotating per session) goes out like any other piece,
  tagged with the tool round so the history records it as played.

A released piece is what the turn says: it is appended to its round's text
(the AgentText events and the final text), so held, dropped or vetoed drafts
never reach the caller, the history or the TTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .. import pipeline_metrics
from ..config import ToolSpeechSpec
from .supervisor import Check, Supervisor
from .turn import AgentTurn


def holds(spec: ToolSpeechSpec, tools_offered: bool) -> bool:
    """Whether a round's text waits for the model's decision."""
    return spec.mode == "hold" and tools_offered


def preamble_spoken(spec: ToolSpeechSpec, tool_calls: bool) -> bool:
    """Whether a held round's text is spoken once the model has decided."""
    return not tool_calls or spec.preamble == "speak"


@dataclass
class _Piece:
    text: str
    round: int
    held: bool  # waiting for its round's decision
    verdict: Check | None = None  # the supervisor's verdict, once known
    check: asyncio.Task[Check] | None = None  # the supervisor LLM deciding it
    dropped: bool = False


class SpeechPolicy:
    """A session's speech gate settings, and what outlives a turn (the filler rotation)."""

    def __init__(self, spec: ToolSpeechSpec, supervisor: Supervisor | None) -> None:
        self.spec = spec
        self.supervisor = supervisor
        self._fillers = 0

    def next_filler(self) -> str:
        filler = self.spec.fillers[self._fillers % len(self.spec.fillers)]
        self._fillers += 1
        return filler

    def open(
        self,
        turn: AgentTurn,
        pieces: asyncio.Queue[tuple[str, int] | None],
        emit: Callable[[AgentTurn], None],
    ) -> SpeechGate:
        """The gate of ``turn``, feeding ``pieces`` (the TTS queue); call from the turn's generation task."""
        return SpeechGate(self, turn, pieces, emit)


class SpeechGate:
    """One turn's gate (see the module docstring)."""

    def __init__(
        self,
        policy: SpeechPolicy,
        turn: AgentTurn,
        pieces: asyncio.Queue[tuple[str, int] | None],
        emit: Callable[[AgentTurn], None],
    ) -> None:
        self._policy = policy
        self._turn = turn
        self._pieces = pieces
        self._emit = emit
        self._pending: deque[_Piece] = deque()
        self._settled = asyncio.Event()
        self._settled.set()
        self._draft = ""  # everything the LLM drafted so far: the supervisor's context
        self._held_since: float | None = None
        self._closed = False
        self._stopped = False  # a draft was vetoed: later pieces are neither checked nor spoken
        # Checks still running when the turn ends (barge-in, failure) are cancelled with it.
        if (task := asyncio.current_task()) is not None:
            task.add_done_callback(lambda _: self.close())

    @property
    def vetoed(self) -> bool:
        return self._turn.vetoed

    def put(self, text: str, round_: int, tools_offered: bool) -> None:
        """A piece the chunker cut from round ``round_``'s text."""
        held = holds(self._policy.spec, tools_offered)
        if held and self._held_since is None:
            self._held_since = time.monotonic()
        piece = _Piece(text, round_, held)
        supervisor = self._policy.supervisor
        if self._stopped:
            piece.dropped = True  # a veto ahead of it: the rest of the turn is not spoken
        elif supervisor is not None:
            piece.verdict = supervisor.check_rules(text)
            if piece.verdict is None:
                piece.check = asyncio.create_task(supervisor.check(self._turn.user.text, self._draft, text))
                piece.check.add_done_callback(lambda _: self._pump())
            elif piece.verdict.verdict != "allow":
                self._stopped = True
        self._draft = f"{self._draft} {text}" if self._draft else text
        self._add(piece)

    async def round_end(self, round_: int, tool_calls: bool) -> None:
        """The model's stream of ``round_`` ended (with tool calls or not): release or drop its held text.
        Before tools run, waits until the round's text is decided (its supervisor verdicts)."""
        speak = preamble_spoken(self._policy.spec, tool_calls)
        for piece in self._pending:
            if piece.round == round_ and piece.held:
                piece.held = False
                piece.dropped = not speak
        if self._held_since is not None:
            pipeline_metrics.SPEECH_HELD_SECONDS.observe(time.monotonic() - self._held_since)
            self._held_since = None
        self._pump()
        if tool_calls:
            await self._settled.wait()

    @contextlib.asynccontextmanager
    async def tools_running(self, round_: int) -> AsyncIterator[None]:
        """Around the tool calls of ``round_``: a filler is spoken if they outlast fillerAfterMs."""
        timer = asyncio.create_task(self._filler_after(round_)) if self._policy.spec.fillers else None
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()

    async def drain(self) -> None:
        """The turn's generation is over: wait until every piece is released. Text whose round was never
        decided (the LLM failed mid-stream) is not spoken."""
        for piece in self._pending:
            if piece.held:
                piece.held, piece.dropped = False, True
        self._pump()
        await self._settled.wait()

    def close(self) -> None:
        self._closed = True
        self._cancel_checks()
        self._pending.clear()
        self._settled.set()

    def _cancel_checks(self) -> None:
        for piece in self._pending:
            if piece.check is not None:
                piece.check.cancel()

    async def _filler_after(self, round_: int) -> None:
        await asyncio.sleep(self._policy.spec.filler_after_ms / 1000)
        if not self._stopped:
            pipeline_metrics.FILLERS_TOTAL.inc()
            self._add(_Piece(self._policy.next_filler(), round_, held=False))

    def _add(self, piece: _Piece) -> None:
        if self._closed:
            if piece.check is not None:
                piece.check.cancel()
            return
        self._pending.append(piece)
        self._settled.clear()
        self._pump()

    def _pump(self) -> None:
        """Release decided pieces from the head of the line, in order."""
        while self._pending:
            piece = self._pending[0]
            check = piece.check
            if not piece.dropped and (piece.held or (check is not None and not check.done())):
                return
            self._pending.popleft()
            if piece.dropped or self.vetoed:
                if check is not None:
                    check.cancel()
                continue
            if check is not None and check.cancelled():
                continue  # never released unchecked
            verdict = check.result() if check is not None else piece.verdict
            if verdict is None:
                self._release(piece.text, piece.round)
                continue
            self._turn.checks.append(verdict)
            if verdict.spoken:
                self._release(verdict.spoken, piece.round)
            if verdict.verdict != "allow":
                self._stopped = True
                self._cancel_checks()
        self._settled.set()

    def _release(self, text: str, round_: int) -> None:
        if self._turn.interrupted:
            return  # a verdict that lands between a barge-in and the generation's cancellation
        rnd = self._turn.rounds[round_]
        rnd.text = f"{rnd.text} {text}" if rnd.text else text
        self._pieces.put_nowait((text, round_))
        self._emit(self._turn)
