"""OpenAI speech (or a compatible server) as the pipeline's TTS: raw 24 kHz PCM, streamed.

``response_format="pcm"`` is headerless PCM16 mono at 24 kHz, and the streaming
response hands over each chunk as it arrives, so the first audio plays while the
rest is still being generated. Closing the iterator closes the HTTP response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config import TTSProvider
from .openai_common import SDK_ERRORS, make_client, provider_error, require
from .pcm_stream import whole_samples

DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
SAMPLE_RATE = 24000


class OpenAITTS:
    sample_rate = SAMPLE_RATE

    def __init__(self, choice: TTSProvider) -> None:
        self.name = "openai"
        self._model = choice.model or DEFAULT_MODEL
        self._voice = choice.voice or DEFAULT_VOICE
        self._client = make_client(choice, "tts")

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        client = require(self._client, "speech")
        try:
            async with client.audio.speech.with_streaming_response.create(
                model=self._model, voice=self._voice, input=text, response_format="pcm"
            ) as response:
                async for pcm in whole_samples(response.iter_bytes()):
                    yield pcm
        except SDK_ERRORS as exc:
            raise provider_error("speech", exc) from None
