"""Small interfaces for the four pipeline stages.

Every provider works on PCM16 mono little-endian bytes at its own
``sample_rate``; the pipeline resamples around it. Providers raise
``ProviderError`` (or time out) to hand over to the next provider of the stage's
fallback chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..config import ToolSpec
from ..conversation import ChatMessage, ToolCall


class ProviderError(Exception):
    """A provider failed; the stage moves on to its next fallback."""


class VAD(Protocol):
    name: str
    sample_rate: int
    frame_samples: int  # the window the model scores at once

    def speech_probability(self, frame: bytes) -> float:
        """Probability that this window (frame_samples samples) holds speech. Cheap and synchronous."""
        ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class Transcript:
    text: str
    final: bool


class STTStream(Protocol):
    async def push(self, pcm: bytes) -> None:
        """Audio of the current utterance, at the provider's sample_rate."""
        ...

    async def finalize(self) -> None:
        """End of the utterance: a final Transcript follows on events()."""
        ...

    def events(self) -> AsyncIterator[Transcript]: ...

    async def aclose(self) -> None: ...


class STT(Protocol):
    name: str
    sample_rate: int

    async def open_stream(self) -> STTStream: ...


@dataclass(frozen=True)
class LLMChunk:
    """A streamed piece of an answer: text, or one complete tool call."""

    text: str = ""
    tool_call: ToolCall | None = None


class ChatModel(Protocol):
    """What answers with text and tool calls: a provider, or a stage's fallback chain."""

    def stream(self, messages: list[ChatMessage], tools: list[ToolSpec]) -> AsyncIterator[LLMChunk]:
        """messages start with the system prompt. Tool-call deltas are assembled by the provider."""
        ...


class LLM(ChatModel, Protocol):
    name: str


class TTS(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 mono at sample_rate, streamed as it is produced."""
        ...


VADFactory = Callable[[], VAD]


@dataclass
class Providers:
    """The built providers of one pod, first choice first. LLM, TTS and STT are shared by
    the pod's sessions (STT opens a stream per session); a VAD is stateful, so each
    session makes its own from the factory."""

    vad: list[VADFactory] = field(default_factory=list)
    stt: list[STT] = field(default_factory=list)
    llm: list[LLM] = field(default_factory=list)
    tts: list[TTS] = field(default_factory=list)
