"""Driving an AgentSession in tests: configs, an event collector, and a frame-stepped caller.

Time is simulated by frames: each step pushes one 20 ms caller frame and pulls
one 20 ms agent frame, the way a transport does on every playout tick, so
assertions are in audio time and hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent_pod.config import AgentConfig
from agent_pod.conversation import Conversation
from agent_pod.pipeline.events import SessionEvent
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.base import Providers
from agent_pod.providers.registry import build_providers
from agent_pod.tools.platform import ToolPlatform
from tests.support.audio import frames, silence
from tests.support.wait import Timeout

CALLER_RATE = 16000
OUT_RATE = 24000
FRAME_MS = 20


def make_config(
    *,
    vad: str = "energy",
    stt: str = "synthetic",
    transcript: str = "hello",
    tts: str = "synthetic",
    rules: list[dict[str, Any]] | None = None,
    llm_options: dict[str, str] | None = None,
    tools: list[dict[str, Any]] | None = None,
    vocabulary: list[str] | None = None,
    barge_in_ms: int = 300,
    min_speech_ms: int = 200,
    min_silence_ms: int = 400,
    stt_fallback: list[dict[str, Any]] | None = None,
    llm_fallback: list[dict[str, Any]] | None = None,
    tts_fallback: list[dict[str, Any]] | None = None,
    tts_options: dict[str, str] | None = None,
    voice: str = "",
) -> AgentConfig:
    llm: dict[str, Any] = {"provider": "scripted", "options": dict(llm_options or {})}
    if rules is not None:
        llm["options"]["rules"] = json.dumps(rules)
    stt_options = {"transcript": transcript} if stt == "synthetic" else {}
    return AgentConfig.model_validate(
        {
            "pipeline": {
                "vad": {"provider": vad, "minSpeechMs": min_speech_ms, "minSilenceMs": min_silence_ms},
                "stt": {
                    "provider": stt,
                    "options": stt_options,
                    "vocabulary": vocabulary or [],
                    "fallback": stt_fallback or [],
                },
                "llm": {**llm, "fallback": llm_fallback or []},
                "tts": {
                    "provider": tts,
                    "options": tts_options or {},
                    "voice": voice,
                    "fallback": tts_fallback or [],
                },
                "bargeIn": {"minSpeechMs": barge_in_ms},
            },
            "tools": tools or [],
        }
    )


class Harness:
    def __init__(
        self,
        config: AgentConfig,
        providers: Providers | None = None,
        conversation: Conversation | None = None,
        session_id: str = "test-session",
        tool_platform: ToolPlatform | None = None,
    ) -> None:
        self.snapshots: list[Conversation] = []
        self.session = AgentSession(
            session_id=session_id,
            config=config,
            providers=providers or build_providers(config.pipeline),
            output_sample_rate=OUT_RATE,
            conversation=conversation,
            on_snapshot=self._snapshot,
            tool_platform=tool_platform,
        )
        self.events: list[SessionEvent] = []
        self._reader: asyncio.Task[None] | None = None
        self.pulled: list[bytes | None] = []

    async def _snapshot(self, conversation: Conversation) -> None:
        self.snapshots.append(conversation)

    async def __aenter__(self) -> Harness:
        await self.session.start()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close("client_ended")
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)

    async def _read(self) -> None:
        async for event in self.session.events():
            self.events.append(event)

    def of_type(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    async def until(self, predicate, within: float = 20.0, what: str = "") -> Any:
        """Let the session run until ``predicate()`` is truthy (condition wait with a deadline)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            value = predicate()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise Timeout(f"timed out after {within}s waiting for {what or predicate}")
            await asyncio.sleep(0.005)

    def step(self, caller_frame: bytes | None = None) -> bytes | None:
        """One 20 ms tick: the caller's frame in, the agent's frame out."""
        if caller_frame is not None:
            self.session.push_audio(caller_frame, CALLER_RATE)
        frame = self.session.pull_audio()
        self.pulled.append(frame)
        return frame

    async def play_caller(self, pcm: bytes, then_silence_ms: int = 600) -> None:
        """Speak ``pcm`` to the session frame by frame, then trailing silence, yielding between frames."""
        for frame in frames(pcm + silence(then_silence_ms, CALLER_RATE), CALLER_RATE):
            self.step(frame)
            await asyncio.sleep(0)

    async def drain_agent_audio(self, within: float = 60.0) -> int:
        """Pull agent frames until nothing is queued (the turn may go on, e.g. waiting for a tool)."""
        n = 0
        deadline = asyncio.get_running_loop().time() + within
        while self.session.queued_audio_ms or n == 0:
            if self.step() is not None:
                n += 1
            elif asyncio.get_running_loop().time() > deadline:
                raise Timeout("agent audio did not start")
            else:
                await asyncio.sleep(0.002)
        return n

    async def drain_agent(self, within: float = 60.0) -> int:
        """Pull agent frames until the current turn is over; returns the number of frames played."""
        n = 0
        deadline = asyncio.get_running_loop().time() + within
        while True:
            if self.step() is not None:
                n += 1
                continue
            if not self.session.busy:
                return n
            if asyncio.get_running_loop().time() > deadline:
                raise Timeout("agent turn did not finish")
            await asyncio.sleep(0.002)
