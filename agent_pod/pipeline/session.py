"""One live call: caller audio/text in, agent audio and events out.

Threading model: everything runs on the event loop. ``push_audio`` runs the
VAD inline (cheap) so a barge-in flushes the output on the window that decided
it; STT, the turn (LLM -> tools -> TTS) and the session's timers are tasks.
``pull_audio`` is called by the transport on every playout tick; a frame it
returns counts as heard by the caller, which is what the history keeps.

Turn taking: caller speech starts a turn once the VAD confirms it; while the
agent speaks, it has to last ``bargeIn.minSpeechMs`` to interrupt, and shorter
speech (a cough, "yeah", "ok") is ignored rather than queued as a turn. A typed
turn (``push_text``) interrupts at once.

Echo: the pipeline does not cancel the agent's own voice in the caller's
audio. Clients must run acoustic echo cancellation (browsers do with
``echoCancellation``; phones and SIP gateways do); without it, loud agent audio
picked up by the caller's microphone can interrupt the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from .. import pipeline_metrics
from ..audio.pcm import InvalidAudio, frame_bytes, validate_chunk
from ..audio.resample import Framer, StreamResampler
from ..config import AgentConfig
from ..context.engine import ContextEngine
from ..context.persistence import CallerMemory
from ..conversation import ChatMessage, Conversation, ToolCall, last_turn_number, trim_history
from ..flows.runtime import FlowRuntime
from ..knowledge.call import CallKnowledge
from ..providers.base import VAD, ChatModel, ProviderError, Providers
from ..providers.fallback import FallbackLLM, FallbackTTS, STTChain, chain, first_vad, stage_timeouts
from ..records.recording import CallRecording, RecordingInfo
from ..records.storage import RecordingStore
from ..sessions.records import HeldInput
from ..tools.audit import ToolAuditRecord
from ..tools.platform import ToolPlatform
from ..transfer.tool import TransferTool
from .audio_input import AudioInput
from .barge_in import BargeIn
from .chunking import SpeechChunker
from .compliance import Auditor, TurnRecord
from .dtmf import DTMF_DIGITS, DtmfCollector
from .events import (
    AgentText,
    ErrorEvent,
    Interruption,
    SessionEnded,
    SessionEvent,
    ToolEvent,
    TurnMetrics,
    UserTranscript,
)
from .input_limits import InputRefused, check_text
from .overlap import OverlapUtterance
from .playback import TurnPlayback
from .recorder import PipelineRecorder
from .speech_gate import SpeechPolicy
from .supervisor import Supervisor
from .tools import ToolRunner
from .turn import AgentTurn, Round, UserTurn
from .vad_gate import Decision, GateParams, State

__all__ = ["AgentSession", "InputRefused", "InvalidAudio"]

log = logging.getLogger(__name__)

FRAME_MS = 20
# TTS runs at most this far ahead of playout: a barge-in then wastes little synthesis (cloud
# TTS bills per character), and a long answer is synthesized piece by piece instead of in one
# burst of CPU that would delay every session's playout tick.
TTS_LOOKAHEAD_MS = 2000
MAX_LLM_ROUNDS = 6  # LLM requests per turn (tool call -> result -> answer ...)
SNAPSHOT_TIMEOUT = 5.0
# Caller audio held while the call is handed to another pod; the caller follows within seconds.
MAX_HELD_SECONDS = 30.0
KNOWN_OUTCOMES = frozenset(pipeline_metrics.SESSION_OUTCOMES)


class _Finalize:
    """Marker in the STT queue: the VAD heard the caller's utterance end at ``ended_at``."""

    __slots__ = ("ended_at",)

    def __init__(self, ended_at: float) -> None:
        self.ended_at = ended_at


class AgentSession:
    def __init__(
        self,
        *,
        session_id: str,
        config: AgentConfig,
        providers: Providers,
        output_sample_rate: int,
        conversation: Conversation | None = None,
        on_snapshot: Callable[[Conversation], Awaitable[None]] | None = None,
        recorder: PipelineRecorder | None = None,
        caller_memory: CallerMemory | None = None,
        tool_platform: ToolPlatform | None = None,
        recordings: RecordingStore | None = None,
    ) -> None:
        if output_sample_rate <= 0 or output_sample_rate % 50:
            raise ValueError(
                f"output sample rate must be a positive multiple of 50 Hz, got {output_sample_rate}"
            )
        self.session_id = session_id
        self.config = config
        self.prompt_id = config.prompt_id
        self.output_sample_rate = output_sample_rate
        self._on_snapshot = on_snapshot
        self._recorder = recorder or PipelineRecorder()
        self._log = logging.LoggerAdapter(log, {"session_id": session_id})
        pipeline = config.pipeline

        if conversation is not None and conversation.session_id != session_id:
            raise ValueError(f"conversation of {conversation.session_id!r} given to session {session_id!r}")
        self._conversation = conversation or Conversation(session_id=session_id, prompt_id=self.prompt_id)
        self._conversation.prompt_id = self.prompt_id
        self._limits = config.session.limits
        self._trim_history()  # a snapshot from a pod with looser limits
        self._turn_counter = last_turn_number(self._conversation.messages)

        self._vad_factories = list(providers.vad)
        vad, self._vad_index = first_vad(self._vad_factories)
        self._gate_params = GateParams(
            window_ms=vad.frame_samples * 1000 / vad.sample_rate,
            threshold=pipeline.vad.threshold,
            min_speech_ms=pipeline.vad.min_speech_ms,
            min_silence_ms=pipeline.vad.min_silence_ms,
        )
        self._input = AudioInput(vad, self._gate_params, self._next_vad)
        # An utterance is cut into turns at this length, so the audio held for STT stays bounded.
        self._max_utterance_windows = max(
            1, int(self._limits.max_utterance_seconds * 1000 / self._gate_params.window_ms)
        )
        self._max_utterance_bytes = int(self._limits.max_utterance_seconds * vad.sample_rate) * 2
        self._stt = STTChain(
            chain(providers.stt, stage_timeouts(pipeline.stt)), vad.sample_rate, self._on_interim
        )
        self._llm = FallbackLLM(chain(providers.llm, stage_timeouts(pipeline.llm)))
        self._tts = FallbackTTS(chain(providers.tts, stage_timeouts(pipeline.tts)))
        self._tools = ToolRunner(
            config.tools,
            session_id,
            self._emit,
            self._recorder,
            platform=tool_platform,
            conversation=self._conversation,
            agent=config.agent,
            namespace=config.namespace,
        )
        # Memory blocks, summaries and the token budget of each request (agent_pod/context).
        self._context = ContextEngine(
            config,
            lambda: self._conversation,
            self._llm,
            self._snapshot,
            self._log,
            caller_memory,
            tool_platform,
        )
        self._flow = FlowRuntime.for_session(config, self._conversation, self._llm)
        # The audit record names the node the call was in (the committed one).
        self._tools.node = lambda: self._conversation.flow.node if self._conversation.flow else ""
        self._speech = SpeechPolicy(pipeline.tool_speech, Supervisor.build(pipeline.supervisor))
        self.transfer = TransferTool(config.transfer)  # the hub sets its requester
        self.knowledge = CallKnowledge(config.knowledge)  # search_knowledge and the context block
        primary_stt = providers.stt[0].name if providers.stt else "synthetic"
        # Re-transcription needs real speech: benchmarks with synthetic STT have tones, not words.
        self._auditor = Auditor(
            enabled=pipeline.compliance.audit and primary_stt != "synthetic",
            session_id=session_id,
            threshold=pipeline.compliance.divergence_threshold,
            retranscribe_always=pipeline.compliance.retranscribe == "always",
            recorder=self._recorder,
        )
        self.turn_records: list[TurnRecord] = []
        # Called with each turn's record once it is final (re-transcribed, or the audit skipped):
        # the call's audit trail is written from here.
        self.on_turn_record: Callable[[TurnRecord], None] | None = None
        # The call's recording (spec.recording), into the pod's store.
        self._recordings = recordings if config.recording.enabled else None
        self.recording: CallRecording | None = None
        self.recording_info: RecordingInfo | None = None
        self._audio_spans: dict[str, list[int]] = {}  # turn id -> [start, end] ms in the recording

        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._stt_queue: asyncio.Queue[bytes | _Finalize | OverlapUtterance] = asyncio.Queue()
        self._stt_queued_bytes = 0
        self._turn_queue: asyncio.Queue[UserTurn] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._audits: set[asyncio.Task[None]] = set()
        self._current: AgentTurn | None = None
        # Set by the transport hub before any turn: a turn's first frame is ready to be pulled ahead
        # of the tick.
        self.first_frame_ready: Callable[[], None] | None = None
        # Set by a transport whose caller buffers agent audio (a phone carrier): called at a barge-in,
        # before the played text is taken; it clears the caller's buffer and returns how many of the
        # frames pulled so far the caller never heard.
        self.on_interrupt: Callable[[], int] | None = None
        # Set with on_interrupt: how many of the frames pulled so far the caller has not yet confirmed
        # played (so could still drop); the recording keeps them back until then.
        self.unconfirmed_frames: Callable[[], int] | None = None
        # The caller's utterance being heard: its audio until it is accepted as a turn (the newest
        # maxUtteranceSeconds of it while the agent talks on), then its length in windows.
        self._utterance: deque[bytes] | None = None
        self._utterance_accepted = False
        self._utterance_windows = 0
        self._started_at = time.monotonic()
        self._last_activity = self._started_at
        self._started = False
        self._closing = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self._ended = False
        self.end_reason: str | None = None
        self._frame_bytes = frame_bytes(output_sample_rate, FRAME_MS)
        self._stt_failed_reported = False
        self._stt_finalizing = False
        self._closer: asyncio.Task[None] | None = None
        # While the call is handed over (see hold_input): caller input kept back, in order.
        self._held: list[HeldInput] | None = None
        self._publishing = False  # a finished turn is being persisted and announced
        self._held_seconds = 0.0
        self._dtmf = DtmfCollector(config.session.dtmf)
        self._dtmf_timer: asyncio.TimerHandle | None = None
        # Caller sound while the agent speaks: cancel phrases, backchannels, false interruptions.
        self._barge = BargeIn(
            pipeline.barge_in, self._barge_in_ms(), lambda: self._current, self._interrupt, self._log
        )

    # ------------------------------------------------------------------ public API

    @property
    def conversation(self) -> Conversation:
        return self._conversation

    @property
    def tool_audit(self) -> deque[ToolAuditRecord]:
        """The audit records of this session's tool calls, the newest 1,000 (docs/tools.md)."""
        return self._tools.audit

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def speaking(self) -> bool:
        """An agent turn is in progress (generating or playing)."""
        return self._current is not None

    @property
    def queued_audio_ms(self) -> int:
        """Agent audio synthesized and waiting to be pulled."""
        turn = self._current
        return turn.playback.queued_frames * FRAME_MS if turn is not None else 0

    @property
    def held_audio_bytes(self) -> int:
        """Caller audio this session holds for speech recognition: the utterance not yet accepted,
        windows queued for the STT and the utterance the STT chain keeps for a failover."""
        utterance = sum(map(len, self._utterance)) if self._utterance is not None else 0
        return utterance + self._stt_queued_bytes + self._stt.utterance_bytes

    @property
    def quiet(self) -> bool:
        """Neither side speaks: no agent turn (or tool call) running or queued, the caller not mid-utterance.
        A call is moved to another pod only at such a moment."""
        return not self._closing and self._held is None and self._caller_quiet()

    def hold_input(self) -> None:
        """Stop feeding caller input to the pipeline and keep it (validated) until ``release_input`` or
        ``take_held``: the call is being handed to another pod, which hears it instead."""
        if self._held is None:
            self._held, self._held_seconds = [], 0.0

    def take_held(self) -> list[HeldInput]:
        """The input held so far (the call has moved on; this session hears nothing more)."""
        held, self._held = self._held or [], []
        return held

    def release_input(self, before: list[HeldInput] | None = None) -> float:
        """Feed ``before`` (input another pod held) and then this session's held input to the pipeline,
        in order, and listen live again. Returns the seconds of audio replayed."""
        items = [*(before or []), *(self._held or [])]
        self._held = None
        seconds = 0.0
        for item in items:
            if item.rate:
                try:
                    self.push_audio(item.pcm, item.rate)
                except InvalidAudio as exc:
                    self._log.warning("session %s: held audio refused: %s", self.session_id, exc)
                    continue
                seconds += item.seconds
            elif item.text:
                try:
                    self.push_text(item.text)
                except InputRefused as exc:
                    self._log.warning("session %s: held text refused: %s", self.session_id, exc)
            elif item.end:
                self._closer = asyncio.create_task(self.close("client_ended"))
                break
        return seconds

    def hold_end(self) -> bool:
        """The caller ends the call while it is handed over: the pod that hears its input ends it (True),
        else nothing is held (False) and the caller's transport closes the session."""
        if self._held is None:
            return False
        self._held.append(HeldInput(end=True))
        return True

    def notify(self, event: SessionEvent) -> None:
        """An event from outside the pipeline (the call's migration) goes out in order with the others."""
        self._emit(event)

    @property
    def busy(self) -> bool:
        """A turn is running or waiting to run."""
        return self._current is not None or not self._turn_queue.empty()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._started_at = self._last_activity = time.monotonic()
        pipeline_metrics.SESSIONS_LIVE.inc()
        self._recorder.session_started()
        await self._context.start()
        if self._recordings is not None:
            recording: CallRecording | None = None
            try:
                recording = self._recordings.open(self.session_id)
                await recording.start()
                recording.unconfirmed = self._unconfirmed_frames
                self.recording = recording
            except Exception:  # a broken store or volume must not refuse the call
                self._log.exception("session %s: recording could not start", self.session_id)
                if recording is not None:
                    await self._recordings.finished(recording, None)
        self._tasks = [
            asyncio.create_task(self._guard(self._turn_loop), name=f"turns-{self.session_id}"),
            asyncio.create_task(self._guard(self._stt_loop), name=f"stt-{self.session_id}"),
            asyncio.create_task(self._guard(self._lifecycle), name=f"lifecycle-{self.session_id}"),
        ]
        self._log.info("session %s started (prompt %s)", self.session_id, self.prompt_id)

    def push_audio(self, pcm: bytes, sample_rate: int) -> None:
        if self._closing:
            return
        if self._held is not None:
            validate_chunk(pcm, sample_rate)
            if self._held_seconds < MAX_HELD_SECONDS:
                held = HeldInput(rate=sample_rate, pcm=pcm)
                self._held.append(held)
                self._held_seconds += held.seconds
            return
        for decision, window in self._input.feed(pcm, sample_rate):
            self._on_window(decision, window)
        if self.recording is not None:
            self.recording.caller(pcm, sample_rate)

    def push_text(self, text: str) -> None:
        """A typed turn; raises InputRefused (nothing changes) when it is too long or too many wait."""
        if self._closing:
            return
        text = text.strip()
        if not text:
            return
        check_text(text, self._limits.max_text_chars, self._turn_queue.qsize())
        if self._held is not None:
            self._held.append(HeldInput(text=text))
            return
        self._last_activity = time.monotonic()
        # A typed turn interrupts the agent like speech does.
        if self._current is not None and self.config.pipeline.barge_in.enabled:
            self._interrupt()
        self._queue_user_turn(text, time.monotonic(), 0.0)

    def push_dtmf(self, digits: str) -> None:
        """Keypad digits from a phone call (0-9, *, #, A-D), collected into one caller input "DTMF
        <digits>" by session.dtmf (terminator, inter-digit timeout, max digits). Raises InputRefused
        for anything else."""
        digits = digits.strip().upper()
        if not digits or any(d not in DTMF_DIGITS for d in digits):
            raise InputRefused("dtmf", f"not DTMF digits: {digits[:16]!r}", "INVALID_ARGUMENT")
        if self._closing:
            return
        self._last_activity = now = time.monotonic()
        for digit in digits:
            first = not self._dtmf.collecting
            if first and self._held is None and self.config.session.dtmf.interrupt_on_first_digit:
                self._interrupt()  # the caller is answering: the agent stops as it would for speech
            done = self._dtmf.press(digit, now)
            if done:
                self._dtmf_input(done)
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if self._dtmf.deadline is not None:
            delay = self._dtmf.deadline - now
            self._dtmf_timer = asyncio.get_running_loop().call_later(delay, self._dtmf_timeout)

    def _dtmf_timeout(self) -> None:
        self._dtmf_timer = None
        done = self._dtmf.expire(time.monotonic())
        if done and not self._closing:
            self._dtmf_input(done)

    def _dtmf_input(self, digits: str) -> None:
        try:
            self.push_text(f"DTMF {digits}")
        except InputRefused as exc:  # too many turns waiting: the digits are dropped, said so
            self._log.warning("DTMF input %s dropped: %s", digits, exc)
            self._emit(ErrorEvent(code=exc.code, message=f"DTMF input dropped: {exc}"))

    def pull_audio(self) -> bytes | None:
        turn = self._current
        frame = None if turn is None else turn.playback.pull()
        if turn is not None and frame is not None:
            if turn.first_frame_at is None:
                turn.first_frame_at = time.monotonic()
                self._report_latency(turn)
            if self._flow is not None:
                self._flow.heard(turn)
        # Every tick, silence included: the recording's right channel keeps the call's time.
        if self.recording is not None:
            at = self.recording.agent(frame, self.output_sample_rate)
            if at is not None and turn is not None:
                self._audio_spans.setdefault(turn.turn_id, [at, at])[1] = at + FRAME_MS
        return frame

    async def events(self) -> AsyncIterator[SessionEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, SessionEnded):
                return

    async def close(self, reason: str) -> None:
        """Idempotent, and safe to cancel: the shutdown runs as a task of its own, so a caller cancelled
        midway (a transport's reader task) never leaves the session half closed."""
        if self._shutdown_task is None:
            self._closing = True
            self.end_reason = reason
            self._shutdown_task = asyncio.create_task(self._shutdown(reason), name=f"close-{self.session_id}")
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, reason: str) -> None:
        me = asyncio.current_task()
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for audit in list(self._audits):
            audit.cancel()
        await asyncio.gather(*self._audits, return_exceptions=True)
        await self._context.aclose()
        await self._stt.aclose()
        await self._tools.aclose()
        await self.knowledge.aclose()
        if self.recording is not None and self._recordings is not None:
            self.recording_info = await self.recording.finish()
            await self._recordings.finished(self.recording, self.recording_info)
        self._ended = True
        if self._started:
            pipeline_metrics.SESSIONS_LIVE.dec()
        pipeline_metrics.SESSIONS_TOTAL.labels(outcome=reason if reason in KNOWN_OUTCOMES else "other").inc()
        self._log.info("session %s ended: %s", self.session_id, reason)
        self._emit(SessionEnded(reason=reason))

    async def wait_audits(self) -> None:
        """Wait until the compliance re-transcriptions of finished turns are done."""
        while self._audits:
            await asyncio.gather(*list(self._audits), return_exceptions=True)

    # ------------------------------------------------------------------ input side

    def _on_window(self, decision: Decision, window: bytes) -> None:
        if decision is Decision.CANDIDATE or (decision is Decision.START and self._utterance is None):
            self._utterance = deque([*self._input.preroll(), window], maxlen=self._max_utterance_windows)
            self._utterance_accepted = False
            self._barge.new_utterance()
        elif self._utterance is not None:
            if self._utterance_accepted:
                self._to_stt(window)
                self._utterance_windows += 1
                if self._utterance_windows >= self._max_utterance_windows:
                    self._cut_utterance()
            else:
                self._utterance.append(window)

        if decision is Decision.START:
            self._last_activity = time.monotonic()
        gate = self._input.gate
        if gate.state is not State.SILENCE:
            self._barge.heard(gate.voiced_ms)
        if self._utterance is not None and not self._utterance_accepted and gate.state is State.SPEECH:
            if self._current is None:
                self._accept_utterance()
            elif self.config.pipeline.barge_in.enabled and gate.voiced_ms >= self._barge_in_ms():
                if not self._barge.pause():
                    self._interrupt()
                self._accept_utterance()

        if decision is Decision.END:
            if self._utterance_accepted:
                self._stt_queue.put_nowait(_Finalize(time.monotonic()))
            else:
                self._transcribe_short_sound()
            self._utterance = None
            self._utterance_accepted = False
        elif decision is Decision.ABORT:
            self._transcribe_short_sound()
            self._utterance = None

    def _next_vad(self, exc: Exception) -> VAD | None:
        """The VAD failed on a window: count it and build the next one of the chain that works."""
        failed = self._input.vad.name
        pipeline_metrics.PROVIDER_ERRORS_TOTAL.labels(stage="vad", provider=failed).inc()
        self._log.warning("session %s: VAD %s failed: %s", self.session_id, failed, exc)
        while self._vad_index + 1 < len(self._vad_factories):
            self._vad_index += 1
            try:
                vad = self._vad_factories[self._vad_index]()
            except Exception as build_error:
                self._log.warning("session %s: fallback VAD unusable: %s", self.session_id, build_error)
                continue
            if vad.sample_rate == self._input.rate:
                pipeline_metrics.PROVIDER_FALLBACKS_TOTAL.labels(
                    stage="vad", from_provider=failed, to_provider=vad.name
                ).inc()
                return vad
        return None

    def _barge_in_ms(self) -> float:
        return float(max(self.config.pipeline.barge_in.min_speech_ms, self.config.pipeline.vad.min_speech_ms))

    @property
    def judging_overlap(self) -> bool:
        """Caller sound heard over the agent is still being judged (agent paused, or transcript due)."""
        return self._barge.judging or not self._stt_queue.empty()

    def _transcribe_short_sound(self) -> None:
        """Caller sound shorter than minSpeechMs over the agent goes to the STT too: it may say "stop"."""
        overlap = self._barge.short_sound()
        if overlap is not None and self._utterance is not None:
            self._stt_queue.put_nowait(overlap)
            for window in self._utterance:
                self._to_stt(window)
            self._stt_queue.put_nowait(_Finalize(time.monotonic()))

    def _accept_utterance(self) -> None:
        assert self._utterance is not None
        self._utterance_accepted = True
        self._last_activity = time.monotonic()
        if self._barge.overlapped is not None:
            self._stt_queue.put_nowait(self._barge.overlapped)  # the STT's transcripts will be judged
        for window in self._utterance:
            self._to_stt(window)
        self._utterance_windows = len(self._utterance)
        self._utterance = deque()

    def _to_stt(self, window: bytes) -> None:
        if self._stt_queued_bytes + len(window) > self._max_utterance_bytes:
            # The STT is a whole utterance behind (slower than real time, or stuck until its timeout):
            # the newest audio goes unheard rather than piling up.
            pipeline_metrics.STT_BACKLOG_DROPPED_TOTAL.inc()
            return
        self._stt_queue.put_nowait(window)
        self._stt_queued_bytes += len(window)

    def _cut_utterance(self) -> None:
        """The caller has spoken (or made noise) for maxUtteranceSeconds: what was heard becomes a turn
        and the speech goes on as the next utterance."""
        self._stt_queue.put_nowait(_Finalize(time.monotonic()))
        self._utterance_windows = 0
        pipeline_metrics.UTTERANCES_CUT_TOTAL.inc()
        self._log.info(
            "session %s: utterance cut at %g s", self.session_id, self._limits.max_utterance_seconds
        )

    def _on_interim(self, text: str) -> None:
        if not self._barge.judge(text, final=False):
            return
        self._emit(UserTranscript(turn_id=self._next_turn_id(peek=True), text=text, final=False))

    async def _stt_loop(self) -> None:
        if self._stt.links:
            try:
                await self._stt.open()
            except ProviderError as exc:
                self._report_stt_failure(exc)
        while True:
            item = await self._stt_queue.get()
            if isinstance(item, OverlapUtterance):
                self._barge.hearing = item
                continue
            if isinstance(item, bytes):
                self._stt_queued_bytes -= len(item)
            if not self._stt.available:
                continue
            try:
                if isinstance(item, bytes):
                    await self._stt.push(item)
                    continue
                self._stt_finalizing = True
                try:
                    text = await self._stt.finish_utterance()
                finally:
                    self._stt_finalizing = False
            except ProviderError as exc:
                self._report_stt_failure(exc)
                continue
            # The end-of-turn decision: the caller stopped speaking and the transcript says something.
            decided = time.monotonic()
            stt_final_ms = (decided - item.ended_at) * 1000
            pipeline_metrics.STT_FINAL_SECONDS.observe(stt_final_ms / 1000)
            if not self._barge.judge(text, final=True):
                continue
            if text.strip():
                self._queue_user_turn(text.strip(), decided, stt_final_ms)
            else:
                self._log.info("session %s: empty transcript, no turn", self.session_id)

    def _report_stt_failure(self, exc: Exception) -> None:
        self._log.warning("session %s: speech recognition failed: %s", self.session_id, exc)
        if not self._stt_failed_reported:
            self._stt_failed_reported = True
            self._emit(ErrorEvent(code="PROVIDER_FAILED", message=f"speech recognition unavailable: {exc}"))

    def _next_turn_id(self, peek: bool = False) -> str:
        n = self._turn_counter + 1
        if not peek:
            self._turn_counter = n
        return f"turn-{n}"

    def _queue_user_turn(self, text: str, ended_at: float, stt_final_ms: float) -> None:
        turn = UserTurn(turn_id=self._next_turn_id(), text=text, ended_at=ended_at, stt_final_ms=stt_final_ms)
        self._context.caller_said(text)
        self._emit(UserTranscript(turn_id=turn.turn_id, text=text, final=True))
        self._turn_queue.put_nowait(turn)

    # ------------------------------------------------------------------ turns

    async def _turn_loop(self) -> None:
        while True:
            user = await self._turn_queue.get()
            self._conversation.messages.append(
                ChatMessage(role="user", content=user.text, turn_id=user.turn_id)
            )
            turn = AgentTurn(
                user=user,
                playback=TurnPlayback(
                    sample_rate=self.output_sample_rate,
                    frame_samples=self.output_sample_rate * FRAME_MS // 1000,
                    keep_played_audio=self._auditor.enabled,
                    on_first_frame=self.first_frame_ready,
                ),
            )
            self._current = turn
            task = turn.task = asyncio.create_task(self._respond(turn), name=f"respond-{self.session_id}")
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                # The session is closing mid-turn: record what was played, once, then stop.
                turn.interrupted = True
                turn.playback.flush()
                task.cancel()
                await asyncio.wait({task})
                final = self._finish_turn(turn)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                        await self._snapshot()
                self._emit(final)
                raise
            # Not quiet until the caller has the final answer: a move offered before it would restore
            # a turn the caller has not seen end.
            self._publishing = True
            final = self._finish_turn(turn)
            # Persist before telling the caller the turn is final: a caller that saw it can resume it.
            await self._snapshot()
            self._emit(final)
            self._publishing = False
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def _respond(self, turn: AgentTurn) -> None:
        """LLM rounds (with tool calls) feeding TTS; returns when the turn's audio has been played."""
        pieces: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue()
        speaker = asyncio.create_task(self._speak(turn, pieces), name=f"tts-{self.session_id}")
        try:
            try:
                await self._generate(turn, pieces)
            except ProviderError as exc:
                turn.failed = True
                self._log.warning("session %s turn %s: %s", self.session_id, turn.turn_id, exc)
                self._emit(ErrorEvent(code="PROVIDER_FAILED", message=str(exc)))
            pieces.put_nowait(None)
            await speaker
        except BaseException:
            speaker.cancel()
            with contextlib.suppress(BaseException):
                await speaker
            raise
        turn.playback.close()
        await turn.playback.wait_drained()

    async def _generate(self, turn: AgentTurn, pieces: asyncio.Queue[tuple[str, int] | None]) -> None:
        # The caller's answer to a proposed sensitive tool call (yes runs it, the result joins the history).
        confirmed = await self._tools.resolve_confirmation(
            turn.turn_id, turn.user.text, lambda: turn.interrupted
        )
        messages = self._context.messages() if self._flow is None else []  # a flow's node: below
        offered = self._tools.offered()
        repairs = {t.name: t.max_argument_repairs for t in offered}
        llm: ChatModel = self._llm
        if self._flow is not None:  # the flow's current node answers, with its prompt, tools and LLM
            # (or, when the confirmed call chose a transition, the node it hands over to)
            step = await self._flow.begin(turn, pieces, confirmed)
            if step.done:  # handed over to a node that answers the caller's next turn
                return
            messages, offered, llm = step.messages, step.tools, step.llm
        # The built-in tools: transfer_call when spec.transfer allows, search_knowledge in tool mode.
        offered = [*offered, *self.transfer.tools, *self.knowledge.tools]
        await self.knowledge.add_context(messages, turn, self._conversation.metadata)
        gate = self._speech.open(turn, pieces, self._emit_agent_text)
        for index in range(MAX_LLM_ROUNDS):
            if index == len(turn.rounds):  # else a confirmed call's handoff opened it with its lines
                turn.rounds.append(Round())
            rnd = turn.rounds[index]
            chunker = SpeechChunker()
            started = time.monotonic()
            first = True
            async for chunk in llm.stream(messages, offered):
                if first:
                    first = False
                    ms = (time.monotonic() - started) * 1000
                    pipeline_metrics.LLM_FIRST_TOKEN_SECONDS.observe(ms / 1000)
                    if index == 0:
                        turn.llm_first_token_ms = ms
                if chunk.text:
                    for piece in chunker.feed(chunk.text):
                        gate.put(piece, index, bool(offered))
                if chunk.tool_call is not None:
                    rnd.tool_calls.append(chunk.tool_call)
            for piece in chunker.flush():
                gate.put(piece, index, bool(offered))
            await gate.round_end(index, bool(rnd.tool_calls))
            if not rnd.tool_calls or gate.vetoed:
                await gate.drain()
                return
            messages.append(ChatMessage(role="assistant", content=rnd.text, tool_calls=list(rnd.tool_calls)))
            async with gate.tools_running(index):
                await asyncio.gather(
                    *(
                        self._call_tool(turn, call, repairs)
                        for call in rnd.tool_calls
                        if self._flow is None or not self._flow.answers(turn, call)  # transition functions
                    )
                )
            if self.transfer.wrap_up(rnd, pieces, index):
                break  # the call moves to another agent once the announcement has played
            for call in rnd.tool_calls:
                messages.append(
                    ChatMessage(role="tool", content=turn.outcomes[call.id].content, tool_call_id=call.id)
                )
            offered = [t for t in offered if repairs.get(t.name, 0) >= 0]
            if self._flow is not None and (moved := await self._flow.moved(turn, index, pieces, messages)):
                if moved.done:  # handed over to a node that answers the caller's next turn
                    break
                messages, llm = moved.messages, moved.llm
                offered = [*moved.tools, *self.transfer.tools, *self.knowledge.tools]
        await gate.drain()

    async def _call_tool(self, turn: AgentTurn, call: ToolCall, repairs: dict[str, int]) -> None:
        if self.transfer.offers(call.name):
            turn.outcomes[call.id] = await self.transfer.call(call, self._tools)
            return
        if self.knowledge.offers(call.name):
            metadata = self._conversation.metadata
            turn.outcomes[call.id] = await self.knowledge.call(call, self._tools, turn, metadata)
            return
        args, outcome = self._tools.check(call, repairs.get(call.name, 0), turn.turn_id)
        if outcome is not None:
            if outcome.state == "invalid_arguments" and call.name in repairs:
                repairs[call.name] -= 1  # below zero: the tool is withdrawn for the rest of the turn
            turn.outcomes[call.id] = outcome
            return
        assert args is not None
        turn.outcomes[call.id] = await self._tools.execute(call, args, lambda: turn.interrupted, turn.turn_id)

    async def _speak(self, turn: AgentTurn, pieces: asyncio.Queue[tuple[str, int] | None]) -> None:
        """Synthesize pieces in order into 20 ms frames of the turn's playback."""
        playback = turn.playback
        first_audio = True
        while (item := await pieces.get()) is not None:
            text, round_ = item
            await playback.wait_for_room(TTS_LOOKAHEAD_MS // FRAME_MS)
            piece = playback.add_piece(text, round_)
            framer = Framer(self._frame_bytes)
            resampler: StreamResampler | None = None
            started = time.monotonic()
            try:
                async for pcm, rate in self._tts.synthesize(text):
                    if first_audio:
                        first_audio = False
                        turn.tts_first_audio_ms = (time.monotonic() - started) * 1000
                        pipeline_metrics.TTS_FIRST_AUDIO_SECONDS.observe(turn.tts_first_audio_ms / 1000)
                    if resampler is None:
                        resampler = StreamResampler(rate, self.output_sample_rate)
                    for frame in framer.push(resampler.process(pcm)):
                        playback.push(piece, frame, len(frame) // 2)
            except ProviderError as exc:
                turn.failed = True
                self._log.warning("session %s: TTS failed for %r: %s", self.session_id, text[:40], exc)
                self._emit(ErrorEvent(code="PROVIDER_FAILED", message=f"speech synthesis failed: {exc}"))
            if resampler is not None:
                for frame in framer.push(resampler.flush()):
                    playback.push(piece, frame, len(frame) // 2)
            tail = framer.flush_padded()
            if tail is not None:
                playback.push(piece, tail[0], tail[1] // 2)
            playback.piece_done(piece)
            await asyncio.sleep(0)  # zero-latency TTS never yields: let the playout clock tick

    def _interrupt(self) -> None:
        """Barge-in: stop the agent now. Synchronous, so the next pull_audio already returns None."""
        turn = self._current
        if turn is None or turn.interrupted:
            return
        turn.interrupted = True
        turn.playback.flush()
        if self.on_interrupt is not None:
            self._unplay(turn, turn.playback.unplay(self.on_interrupt()))
        self._barge.settle(turn, "interrupted")
        self._recorder.interruption()
        played = turn.playback.played_text()
        self._emit(Interruption(turn_id=turn.turn_id, played_text=played, played_ms=turn.playback.played_ms))
        self._log.info(
            "session %s turn %s interrupted after %d ms",
            self.session_id,
            turn.turn_id,
            turn.playback.played_ms,
        )
        if turn.task is not None:
            turn.task.cancel()

    def _unconfirmed_frames(self) -> int:
        return self.unconfirmed_frames() if self.unconfirmed_frames is not None else 0

    def _unplay(self, turn: AgentTurn, frames: int) -> None:
        """The caller never heard the turn's newest ``frames``: out of the recording's agent channel too,
        and the turn's span there ends where its played audio does."""
        if self.recording is None or not frames:
            return
        cut = self.recording.unplay_agent(frames)
        span = self._audio_spans.get(turn.turn_id)
        if cut is None or span is None:
            return
        if cut <= span[0]:
            del self._audio_spans[turn.turn_id]  # none of it was heard
        else:
            span[1] = min(span[1], cut)

    def _finish_turn(self, turn: AgentTurn) -> AgentText:
        """Record the turn in the history exactly once, with only the played text; returns the final
        AgentText for the caller to emit once the history is persisted."""
        for call in turn.cancel_pending():
            self._tools.finish(call, turn.outcomes[call.id])
        self._current = None
        self._conversation.messages.extend(turn.history())
        if self._flow is not None:  # the turn's transitions, committed with its history
            self._flow.commit(turn)
        self._conversation.turns += 1
        self._recorder.turn_finished(turn.failed)
        self._trim_history()
        self._context.turn_finished(turn)
        played = turn.playback.played_text()
        final = AgentText(
            turn_id=turn.turn_id, text=turn.text, played_text=played, final=True, interrupted=turn.interrupted
        )
        record = TurnRecord(
            turn_id=turn.turn_id,
            sent_to_tts=turn.playback.sent_text(),
            played_text=played,
            played_ms=turn.playback.played_ms,
            interrupted=turn.interrupted,
            supervisor=turn.checks,
            vetoed=turn.vetoed,
            knowledge_docs=list(turn.knowledge_docs),
        )
        if (span := self._audio_spans.pop(turn.turn_id, None)) is not None:
            record.audio_start_ms, record.audio_end_ms = span
        self.turn_records.append(record)
        if not self._auditor.enabled:
            record.audit = "skipped"
            self._record_final(record)
        else:
            audio = bytes(turn.playback.played_audio)
            task = asyncio.create_task(self._auditor.audit(record, audio, self.output_sample_rate))
            self._audits.add(task)
            task.add_done_callback(self._audits.discard)
            task.add_done_callback(lambda _: self._record_final(record))
        return final

    def _record_final(self, record: TurnRecord) -> None:
        if self.on_turn_record is None:
            return
        try:
            self.on_turn_record(record)
        except Exception:
            self._log.exception(
                "session %s turn %s: the turn record's consumer failed", self.session_id, record.turn_id
            )

    def _trim_history(self) -> None:
        limits = self._limits
        messages, dropped = trim_history(
            self._conversation.messages, limits.max_history_turns, limits.max_history_chars
        )
        if dropped:
            self._conversation.messages = messages
            pipeline_metrics.HISTORY_TURNS_DROPPED_TOTAL.inc(dropped)

    def _emit_agent_text(self, turn: AgentTurn) -> None:
        self._emit(
            AgentText(
                turn_id=turn.turn_id, text=turn.text, played_text=turn.playback.played_text(), final=False
            )
        )

    def _report_latency(self, turn: AgentTurn) -> None:
        assert turn.first_frame_at is not None
        latency = turn.first_frame_at - turn.user.ended_at
        self._recorder.response_latency(latency)
        self._emit(
            TurnMetrics(
                turn_id=turn.turn_id,
                response_latency_ms=latency * 1000,
                stt_final_ms=turn.user.stt_final_ms,
                llm_first_token_ms=turn.llm_first_token_ms,
                tts_first_audio_ms=turn.tts_first_audio_ms,
            )
        )

    async def _snapshot(self) -> None:
        if self._on_snapshot is None:
            return
        try:
            await self._on_snapshot(self._conversation.model_copy(deep=True))
        except Exception:
            self._log.exception("session %s: snapshot failed", self.session_id)

    # ------------------------------------------------------------------ lifecycle

    async def _lifecycle(self) -> None:
        spec = self.config.session
        while True:
            now = time.monotonic()
            max_deadline = self._started_at + spec.max_duration_seconds
            idle_deadline = self._last_activity + spec.idle_timeout_seconds
            if now >= max_deadline:
                await self.close("max_duration")
                return
            if now >= idle_deadline:
                if self._caller_quiet():
                    await self.close("idle_timeout")
                    return
                # The agent is still answering or the caller is mid-utterance: not idle.
                self._last_activity = now
                continue
            await asyncio.sleep(min(max_deadline, idle_deadline) - now)

    def _caller_quiet(self) -> bool:
        return (
            self._current is None
            and not self._publishing
            and self._turn_queue.empty()
            and self._utterance is None
            and self._stt_queue.empty()
            and not self._stt_finalizing
        )

    async def _guard(self, body: Callable[[], Awaitable[None]]) -> None:
        """A crashed session task ends the session with an error instead of leaving it half-alive."""
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._log.exception("session %s: internal error", self.session_id)
            self._emit(
                ErrorEvent(code="INTERNAL", message=f"internal error: {type(exc).__name__}", fatal=True)
            )
            if not self._closing:
                self._closer = asyncio.create_task(self.close("error"))

    def _emit(self, event: SessionEvent | ToolEvent) -> None:
        self._events.put_nowait(event)
