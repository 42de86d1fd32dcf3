"""Deepgram speak v1 (REST) as the pipeline's TTS: raw linear16, streamed as it is generated.

``container=none`` drops the WAV header Deepgram otherwise puts before linear16,
so every streamed byte is audio. The voice is Deepgram's model name (for
example ``aura-2-thalia-en``); other options pass through as query parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from deepgram.core.request_options import RequestOptions

from ..config import TTSProvider
from .deepgram_common import SDK_ERRORS, make_client, provider_error, require, sample_rate_option
from .pcm_stream import whole_samples

DEFAULT_VOICE = "aura-2-thalia-en"
DEFAULT_SAMPLE_RATE = 24000
_OWN_PARAMS = {"model", "encoding", "container", "sample_rate"}


class DeepgramTTS:
    def __init__(self, choice: TTSProvider) -> None:
        self.name = "deepgram"
        self._voice = choice.voice or choice.model or DEFAULT_VOICE
        self.sample_rate = sample_rate_option(choice.options, DEFAULT_SAMPLE_RATE)
        self._client = make_client(choice, "tts")
        extra = {k: v for k, v in choice.options.items() if k not in _OWN_PARAMS}
        self._extra: RequestOptions = {"additional_query_parameters": extra}

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        client = require(self._client, "speak")
        try:
            async with client.speak.v1.audio.with_raw_response.generate(
                text=text,
                model=self._voice,
                encoding="linear16",
                container="none",
                sample_rate=self.sample_rate,
                request_options=self._extra,
            ) as response:
                async for pcm in whole_samples(response.data):
                    yield pcm
        except SDK_ERRORS as exc:
            raise provider_error("speak", exc) from None
