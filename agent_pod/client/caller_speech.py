"""A caller's voice: text spoken by espeak-ng as PCM16 mono, padded so a VAD hears where it ends."""

from __future__ import annotations

from ..audio.resample import StreamResampler
from ..config import TTSProvider
from ..providers.espeak_tts import EspeakTTS

# Slower than the agent's voice: offline recognizers hear espeak-ng better at this pace.
CALLER_WORDS_PER_MINUTE = 140
LEAD_SILENCE_MS = 200


async def speak(
    text: str,
    sample_rate: int,
    *,
    trailing_silence_ms: int = 1000,
    voice: str = "en-us",
    words_per_minute: int = CALLER_WORDS_PER_MINUTE,
) -> bytes:
    """``text`` as PCM16 mono at ``sample_rate`` with a short lead-in and ``trailing_silence_ms`` of
    silence after it, long enough for the agent's VAD to decide the caller's turn ended."""
    tts = EspeakTTS(TTSProvider(provider="espeak", voice=voice, options={"speed": str(words_per_minute)}))
    resampler = StreamResampler(EspeakTTS.sample_rate, sample_rate)
    speech = bytearray()
    async for pcm in tts.synthesize(text):
        speech += resampler.process(pcm)
    speech += resampler.flush()
    lead = bytes(sample_rate * LEAD_SILENCE_MS // 1000 * 2)
    tail = bytes(sample_rate * trailing_silence_ms // 1000 * 2)
    return lead + bytes(speech) + tail
