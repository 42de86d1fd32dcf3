"""Build a pod's providers from its PipelineSpec.

Modules are imported lazily by provider name, so a pod only loads what its
configuration uses (no ONNX runtime without silero, no SDKs without cloud
providers). Each class is constructed as ``Cls(choice)`` with the stage's
pydantic provider model; cloud providers resolve their own credentials.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from ..config import LLMProvider, PipelineSpec, STTProvider, TTSProvider, VADProvider
from ..pipeline.overlap import with_overlap_vocabulary
from .base import LLM, STT, TTS, VAD, Providers, VADFactory

# (stage, provider name) -> "module:Class" under agent_pod.providers
REGISTRY: dict[tuple[str, str], str] = {
    ("vad", "silero"): "vad_silero:SileroVAD",
    ("vad", "webrtc"): "vad_webrtc:WebRTCVAD",
    ("vad", "energy"): "vad_energy:EnergyVAD",
    ("stt", "pocketsphinx"): "pocketsphinx_stt:PocketsphinxSTT",
    ("stt", "synthetic"): "synthetic:SyntheticSTT",
    ("stt", "openai"): "openai_stt:OpenAISTT",
    ("stt", "deepgram"): "deepgram_stt:DeepgramSTT",
    ("llm", "scripted"): "scripted_llm:ScriptedLLM",
    ("llm", "openai"): "openai_llm:OpenAILLM",
    ("tts", "espeak"): "espeak_tts:EspeakTTS",
    ("tts", "synthetic"): "synthetic:SyntheticTTS",
    ("tts", "openai"): "openai_tts:OpenAITTS",
    ("tts", "deepgram"): "deepgram_tts:DeepgramTTS",
}


class UnknownProvider(ValueError):
    pass


def provider_class(stage: str, name: str) -> Any:
    target = REGISTRY.get((stage, name))
    if target is None:
        known = sorted(n for s, n in REGISTRY if s == stage)
        raise UnknownProvider(f"unknown {stage} provider {name!r} (known: {', '.join(known)})")
    module_name, cls_name = target.split(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, cls_name)


def _build(stage: str, choice: STTProvider | LLMProvider | TTSProvider) -> Any:
    return provider_class(stage, choice.provider)(choice)


def vad_factory(choice: VADProvider) -> VADFactory:
    """VADs keep per-stream state: sessions make their own from this factory."""
    cls = provider_class("vad", choice.provider)
    # Build one now so a broken model fails at pod start, not on the first call.
    cls(choice)
    factory: VADFactory = functools.partial(cls, choice)
    return factory


def build_providers(pipeline: PipelineSpec) -> Providers:
    """Providers of every stage, first choice first, fallbacks after (aligned with stage_timeouts)."""
    stt: list[STT] = [
        _build("stt", with_overlap_vocabulary(c, pipeline.barge_in))
        for c in [pipeline.stt, *pipeline.stt.fallback]
    ]
    llm: list[LLM] = [_build("llm", c) for c in [pipeline.llm, *pipeline.llm.fallback]]
    tts: list[TTS] = [_build("tts", c) for c in [pipeline.tts, *pipeline.tts.fallback]]
    vad: list[VADFactory] = [vad_factory(c) for c in [pipeline.vad, *pipeline.vad.fallback]]
    return Providers(vad=vad, stt=stt, llm=llm, tts=tts)


__all__ = ["VAD", "UnknownProvider", "build_providers", "provider_class", "vad_factory"]
