"""How much audio time a transport's receive path adds before the pod can decide that a turn ended.

The benchmark callers' turn (silence, a 0.4 s tone, silence) is fed frame by
frame to a real session with the benchmark's zero-latency config, through the
same receive path as the transport (WebRTC: the caller's Opus encoder, the
pod's decoder and the rate it decodes to; gRPC: PCM at 16 kHz as sent). The
frame after which the session decides gives the delay in audio time, beyond the
``minSilenceMs`` the VAD must hear: codec lookahead, resampling delay and VAD
window alignment. No clock is involved.
"""

from __future__ import annotations

import asyncio

from agent_pod.client.caller_audio import frames
from agent_pod.client.webrtc_client import encode_frames
from agent_pod.pipeline.events import UserTranscript
from agent_pod.pipeline.session import AgentSession
from agent_pod.providers.registry import build_providers
from agent_pod.transports.opus import MonoDecoder
from bench.transport_common import MIN_SILENCE_MS, zero_latency_config
from tests.support.pod import tone

FRAME_MS = 20
LEAD_SECONDS = 0.2
SPEECH_SECONDS = 0.4


def _caller_frames(transport: str) -> tuple[list[bytes], int]:
    """(PCM frames as the session receives them, their sample rate)."""
    if transport == "grpc":
        rate = 16000
        pcm = bytes(int(rate * LEAD_SECONDS) * 2) + tone(rate, SPEECH_SECONDS, silence_after=1.0)
        return frames(pcm, rate), rate
    pcm = bytes(int(48000 * LEAD_SECONDS) * 2) + tone(48000, SPEECH_SECONDS, silence_after=1.0)
    decoder = MonoDecoder()
    return [decoder.decode(packet) for packet in encode_frames(pcm)], decoder.sample_rate


async def _decision_frame(transport: str) -> int:
    config = zero_latency_config()
    session = AgentSession(
        session_id=f"input-probe-{transport}",
        config=config,
        providers=build_providers(config.pipeline),
        output_sample_rate=16000,
    )
    decided = asyncio.Event()

    async def watch() -> None:
        async for event in session.events():
            if isinstance(event, UserTranscript) and event.final:
                decided.set()

    await session.start()
    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        chunks, rate = _caller_frames(transport)
        for index, chunk in enumerate(chunks):
            session.push_audio(chunk, rate)
            for _ in range(50):  # let the zero-latency STT finish its work for this frame
                await asyncio.sleep(0)
            if decided.is_set():
                return index
        raise RuntimeError(f"{transport}: the session never decided the turn ended")
    finally:
        await session.close("client_ended")
        watcher.cancel()


async def input_audio_delay_ms(transport: str) -> float:
    """Audio time from the caller's end of speech to the pod's decision, minus ``minSilenceMs``."""
    decision = await _decision_frame(transport)
    last_speech = int((LEAD_SECONDS + SPEECH_SECONDS) * 1000 / FRAME_MS) - 1
    # The caller marks its end of speech as its last speech frame goes out; frame i goes out
    # (i - last_speech) x 20 ms later.
    return float((decision - last_speech) * FRAME_MS - MIN_SILENCE_MS)
