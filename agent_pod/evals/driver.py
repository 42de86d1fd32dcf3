"""One scenario run as a real call over gRPC: the caller's turns go out, the pod's events come back
and are sorted into the caller turn they answer.

A caller turn is answered when every agent turn it caused has its final AgentText (the pod sends
it once the answer's audio has been played, tool calls and follow-up generations included). Typed
input becomes exactly one agent turn; speech becomes the turns the pod's VAD and STT make of it,
so a turn whose speech the pod did not hear times out (``turn_timeout_ms``) and says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..client.caller_speech import speak
from ..client.grpc_client import GrpcCaller
from ..client.record import CallRecorder
from .record import AgentAnswer, CallRecord, ToolCallRecord, TurnRecord
from .scenario import Scenario, ScenarioSettings, Turn

SAMPLE_RATE = 16000
CONNECT_SECONDS = 10.0
# Quiet after each utterance: longer than any VAD minSilenceMs, so the pod hears the turn end.
TRAILING_SILENCE_MS = 1000


class TurnTracker:
    """Feeds a caller turn's record from the pod's events (a CallRecorder ``on_event`` hook)."""

    def __init__(self) -> None:
        self.current: TurnRecord | None = None

    def on_event(self, kind: str, fields: dict[str, Any]) -> None:
        turn = self.current
        if turn is None:
            return  # between caller turns nothing is expected; late events are not graded
        if kind == "user_transcript" and fields.get("final"):
            answer = self._answer(turn, str(fields.get("turn_id", "")))
            answer.heard = str(fields.get("text", ""))
        elif kind == "agent_text":
            answer = self._answer(turn, str(fields.get("turn_id", "")))
            answer.text = str(fields.get("text", ""))
            answer.played_text = str(fields.get("played_text", ""))
            if fields.get("final"):
                answer.final = True
                answer.interrupted = bool(fields.get("interrupted"))
        elif kind == "interruption":
            self._answer(turn, str(fields.get("turn_id", ""))).interruption_event = True
        elif kind == "turn_metrics":
            answer = self._answer(turn, str(fields.get("turn_id", "")))
            answer.response_latency_ms = float(fields.get("response_latency_ms", 0.0))
        elif kind == "tool":
            self._tool(turn, fields)
        elif kind == "error":
            turn.errors.append(f"{fields.get('code', '')}: {fields.get('message', '')}")

    @staticmethod
    def _answer(turn: TurnRecord, turn_id: str) -> AgentAnswer:
        for answer in turn.answers:
            if answer.turn_id == turn_id:
                return answer
        answer = AgentAnswer(turn_id=turn_id)
        turn.answers.append(answer)
        return answer

    @staticmethod
    def _tool(turn: TurnRecord, fields: dict[str, Any]) -> None:
        call_id = str(fields.get("call_id", ""))
        call = next((c for c in turn.tool_calls if c.call_id == call_id), None)
        if call is None:
            call = ToolCallRecord(call_id=call_id, name=str(fields.get("name", "")))
            turn.tool_calls.append(call)
        state = str(fields.get("state", "")).lower()
        call.state = "started" if state in ("", "state_unspecified") else state
        for key in ("arguments_json", "result_json", "error"):
            if fields.get(key):
                setattr(call, key, str(fields[key]))

    def answered(self, answers_needed: int) -> bool:
        turn = self.current
        return turn is not None and len(turn.answers) >= answers_needed and all(a.final for a in turn.answers)


class ScenarioCall:
    """One call playing one scenario against ``address``."""

    def __init__(
        self, scenario: Scenario, settings: ScenarioSettings, address: str, api_key: str | None = None
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.tracker = TurnTracker()
        self.recorder = CallRecorder(on_event=self.tracker.on_event)
        self.caller = GrpcCaller(address, recorder=self.recorder, api_key=api_key, sample_rate=SAMPLE_RATE)
        self.record = CallRecord()

    async def run(self) -> CallRecord:
        started = time.monotonic()
        try:
            await self.caller.open(within=CONNECT_SECONDS)
        except (ConnectionError, TimeoutError) as exc:
            self.record.errors.append(f"could not start the call: {exc}")
            await self.caller.close()
            return self.record
        self.record.session_id = self.caller.session_id
        self.record.pod = self.caller.pods[0] if self.caller.pods else ""
        try:
            for turn in self.scenario.turns:
                if self.recorder.summary.ended is not None:
                    break
                self.record.turns.append(await self._turn(turn))
            if self.recorder.summary.ended is not None:
                self.record.errors.append(f"the call ended early: {self.recorder.summary.ended}")
        finally:
            await self.caller.end("eval done")
            await self.caller.close()
        self.record.ended = self.recorder.summary.ended
        self.record.duration_ms = (time.monotonic() - started) * 1000
        return self.record

    async def _turn(self, turn: Turn) -> TurnRecord:
        record = TurnRecord(
            caller_text=turn.text,
            typed=turn.typed or self.settings.mode == "text",
            barge_in_text=turn.barge_in.say if turn.barge_in else None,
        )
        self.tracker.current = record
        timeout = self.settings.turn_timeout_ms / 1000
        audible_before = len(self.recorder.audible_times)
        try:
            await self._send(turn.text, spoken=not record.typed)
            if turn.barge_in is not None:
                await self._wait(
                    lambda: len(self.recorder.audible_times) > audible_before or self.tracker.answered(1),
                    timeout,
                )
                if len(self.recorder.audible_times) > audible_before:
                    await asyncio.sleep(turn.barge_in.after_ms / 1000)  # the scenario's timing, not a wait
                    await self._send(turn.barge_in.say, spoken=self.settings.mode == "audio")
                    record.barge_in_sent = True
            # An interruption is a turn of its own: its answer belongs to this caller turn too.
            await self._wait(lambda: self.tracker.answered(2 if record.barge_in_sent else 1), timeout)
        except TimeoutError:
            record.timed_out = True
        finally:
            self.tracker.current = None
        return record

    async def _send(self, text: str, spoken: bool) -> None:
        if not spoken:
            self.caller.send_text(text)
            return
        await self.caller.play(await speak(text, SAMPLE_RATE, trailing_silence_ms=TRAILING_SILENCE_MS))

    async def _wait(self, condition: Callable[[], bool], within: float) -> None:
        """Until ``condition`` holds or the call ended; TimeoutError after ``within`` s."""
        await self.recorder.wait(lambda s: s.ended is not None or condition(), within)
