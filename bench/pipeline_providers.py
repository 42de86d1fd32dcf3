"""CPU cost of the offline providers, measured on real espeak-ng speech.

* VAD: microseconds per window and CPU milliseconds per second of caller audio
  (the VAD runs inline in push_audio, on the event loop, for every session),
  and the memory each further silero call adds (its runtime is shared).
* pocketsphinx STT: real-time factor of streaming decoding with a vocabulary
  grammar and with the general English model (runs in worker threads).
* espeak-ng TTS: time to the first audio and real-time factor.
* compliance re-transcription: real-time factor of the general-model decode of
  played audio (one worker thread per pod).

    python -m bench.pipeline_providers [--seconds 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent_pod.audio.resample import StreamResampler
from agent_pod.audio.wav import WavStream
from agent_pod.config import TTSProvider
from agent_pod.providers.espeak_tts import EspeakTTS
from agent_pod.providers.scripted_llm import STORY
from agent_pod.providers.sphinx import make_decoder, transcribe
from agent_pod.providers.vad_energy import EnergyVAD
from agent_pod.providers.vad_silero import SileroVAD
from agent_pod.providers.vad_webrtc import WebRTCVAD
from bench.report import write_json

RATE = 16000
SENTENCE = "I would like to book a table for two tonight at seven"


def speech(text: str) -> bytes:
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", text], capture_output=True, check=True
    ).stdout
    stream = WavStream()
    pcm = stream.feed(wav)
    assert stream.sample_rate is not None
    r = StreamResampler(stream.sample_rate, RATE)
    return r.process(pcm) + r.flush()


def bench_vads(audio: bytes, call: bytes) -> list[dict[str, Any]]:
    """``audio`` is continuous speech (worst case); ``call`` a caller who also listens (half silence)."""
    rows = []
    for label, vad, pcm in (
        ("silero", SileroVAD(), audio),
        ("silero (call: half silence)", SileroVAD(), call),
        ("webrtc", WebRTCVAD(), audio),
        ("energy", EnergyVAD(), audio),
    ):
        size = vad.frame_samples * 2
        windows = [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]
        start = time.process_time()
        for w in windows:
            vad.speech_probability(w)
        cpu = time.process_time() - start
        seconds = len(windows) * vad.frame_samples / RATE
        rows.append(
            {
                "vad": label,
                "window_ms": vad.frame_samples * 1000 / RATE,
                "us_per_window": cpu / len(windows) * 1e6,
                "cpu_ms_per_audio_second": cpu * 1000 / seconds,
                "sessions_per_core_vad_only": seconds / cpu,
            }
        )
    return rows


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def bench_silero_memory(audio: bytes, calls: int = 50) -> dict[str, Any]:
    """RSS added by ``calls`` more silero VADs, each having scored a window (the runtime already exists)."""
    window = audio[: SileroVAD.frame_samples * 2]
    before = rss_mib()
    vads = [SileroVAD() for _ in range(calls)]
    for vad in vads:
        vad.speech_probability(window)
    added = rss_mib() - before
    return {"calls": calls, "rss_added_mib": added, "mib_per_call": added / calls}


def bench_sphinx(audio: bytes) -> list[dict[str, Any]]:
    rows = []
    for label, vocabulary in (
        ("vocabulary grammar", [SENTENCE, "tell me a story", "hello"]),
        ("general model", []),
    ):
        decoder = make_decoder(vocabulary)
        start = time.process_time()
        decoder.start_utt()
        for i in range(0, len(audio), 3200):  # 100 ms batches, as the provider does
            decoder.process_raw(audio[i : i + 3200])
        decoder.end_utt()
        cpu = time.process_time() - start
        hyp = decoder.hyp()
        rows.append(
            {
                "stt": f"pocketsphinx ({label})",
                "real_time_factor": cpu / (len(audio) / 2 / RATE),
                "heard": hyp.hypstr if hyp else "",
            }
        )
    return rows


async def bench_espeak() -> dict[str, Any]:
    tts = EspeakTTS(TTSProvider(provider="espeak"))
    firsts, rtfs = [], []
    for sentence in STORY.split(". "):
        start = time.monotonic()
        first = None
        samples = 0
        async for pcm in tts.synthesize(sentence):
            first = first or time.monotonic() - start
            samples += len(pcm) // 2
        rtfs.append((time.monotonic() - start) / (samples / tts.sample_rate))
        firsts.append(first or 0.0)
    return {
        "tts": "espeak-ng",
        "first_audio_p50_ms": float(np.percentile(firsts, 50) * 1000),
        "first_audio_max_ms": max(firsts) * 1000,
        "real_time_factor": float(np.mean(rtfs)),
    }


def bench_audit(audio: bytes) -> dict[str, Any]:
    decoder = make_decoder()
    start = time.process_time()
    text = transcribe(decoder, audio)
    cpu = time.process_time() - start
    return {
        "audit": "re-transcription (general model, whole turn)",
        "real_time_factor": cpu / (len(audio) / 2 / RATE),
        "heard": text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="seconds of caller speech for the VAD runs"
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    sentence = speech(SENTENCE)
    story = speech(STORY)
    repeats = max(1, int(args.seconds * RATE * 2 / len(story)))
    call = b"".join(story[i : i + RATE * 2] + bytes(RATE * 2) for i in range(0, len(story), RATE * 2))
    vads = bench_vads(story * repeats, call * repeats)
    silero_memory = bench_silero_memory(story)
    sphinx = bench_sphinx(sentence)
    espeak = asyncio.run(bench_espeak())
    audit = bench_audit(story[: RATE * 2 * 8])

    print("VAD (inline in push_audio, per session)")
    print(
        f"{'vad':>28} {'window':>7} {'us/window':>10} {'CPU ms/audio s':>15} {'sessions/core, VAD only':>24}"
    )
    for r in vads:
        print(
            f"{r['vad']:>28} {r['window_ms']:>5.0f}ms {r['us_per_window']:>10.1f} "
            f"{r['cpu_ms_per_audio_second']:>15.2f} {r['sessions_per_core_vad_only']:>24.0f}"
        )
    print(
        f"silero memory: {silero_memory['calls']} more calls add {silero_memory['rss_added_mib']:.1f} MiB "
        f"({silero_memory['mib_per_call']:.2f} MiB per call)"
    )
    print("\nSTT / TTS / audit (worker threads and subprocesses)")
    for r in sphinx:
        print(f"  {r['stt']:<40} RTF {r['real_time_factor']:.3f}  heard: {r['heard']!r}")
    print(
        f"  {'espeak-ng TTS':<40} RTF {espeak['real_time_factor']:.3f}  first audio p50 "
        f"{espeak['first_audio_p50_ms']:.1f} ms, max {espeak['first_audio_max_ms']:.1f} ms"
    )
    print(f"  {audit['audit']:<40} RTF {audit['real_time_factor']:.3f}")
    write_json(
        args.json,
        {
            "benchmark": "pipeline_providers",
            "vad": vads,
            "silero_memory": silero_memory,
            "stt": sphinx,
            "tts": espeak,
            "audit": audit,
        },
    )


if __name__ == "__main__":
    main()
