"""A labelled set of caller sounds to play over the agent: speech, backchannels, cancel phrases, noise.

Speech comes from espeak-ng in several voices and speeds; noise from numpy (white, pink, clicks, a
cough-like burst, a breath). Clips are 16 kHz PCM16, generated on first use and cached under
``$XDG_CACHE_HOME/voicefleet/overlap-clips`` (nothing binary is committed).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.audio import clicks, espeak_utterance, trim_silence

RATE = 16000
KINDS = ("speech", "backchannel", "cancel", "noise")
SENTENCES = (
    "what time do you open tomorrow",
    "actually I need to change my booking",
    "can you tell me the price first",
    "no that is not what I asked",
)
BACKCHANNELS = ("uh-huh", "mm-hmm", "okay", "right", "yeah", "sure")
CANCELS = ("stop", "cancel", "wait", "hold on")
VOICES = ("en-us", "en-gb", "en-us+f3")
SPEEDS = (140, 190)


@dataclass(frozen=True)
class Clip:
    kind: str  # the true class: speech, backchannel, cancel or noise
    name: str
    pcm: bytes


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voicefleet" / "overlap-clips"


def _cached(key: str, make: Callable[[], bytes]) -> bytes:
    path = _cache_dir() / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".pcm")
    if path.exists():
        return path.read_bytes()
    pcm = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pcm)
    tmp.replace(path)
    return pcm


def _pcm(x: np.ndarray) -> bytes:
    return np.asarray(np.clip(x, -1, 1) * 32767, dtype="<i2").tobytes()


def _band(noise: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1 / RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    out = np.fft.irfft(spectrum, len(noise))
    return out / (np.max(np.abs(out)) or 1.0)


def white(ms: int, level: float, seed: int) -> bytes:
    return _pcm(np.random.default_rng(seed).uniform(-level, level, RATE * ms // 1000))


def pink(ms: int, level: float, seed: int) -> bytes:
    n = RATE * ms // 1000
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))  # 1/f power
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return _pcm(level * x / np.max(np.abs(x)))


def cough(level: float, seed: int) -> bytes:
    """Two short bursts of band-passed noise with a sharp attack and a fast decay."""
    rng = np.random.default_rng(seed)
    parts = []
    for ms in (180, 140):
        n = RATE * ms // 1000
        t = np.arange(n) / RATE
        envelope = np.minimum(1.0, t / 0.008) * np.exp(-t / 0.06)
        parts += [_band(rng.standard_normal(n), 300, 3500) * envelope * level, np.zeros(RATE * 60 // 1000)]
    return _pcm(np.concatenate(parts))


def breath(ms: int, level: float, seed: int) -> bytes:
    """Soft band-passed noise that swells and fades (an inhale into the microphone)."""
    n = RATE * ms // 1000
    envelope = np.sin(np.linspace(0, np.pi, n)) ** 2
    return _pcm(_band(np.random.default_rng(seed).standard_normal(n), 400, 2500) * envelope * level)


def _speak(text: str, voice: str, speed: int) -> bytes:
    return trim_silence(espeak_utterance(text, RATE, voice, speed))


def _spoken(kind: str, texts: tuple[str, ...]) -> list[Clip]:
    clips = []
    for text in texts:
        for voice in VOICES:
            for speed in SPEEDS:
                make = functools.partial(_speak, text, voice, speed)
                pcm = _cached(f"espeak|{text}|{voice}|{speed}", make)
                clips.append(Clip(kind, f"{text} ({voice}, {speed} wpm)", pcm))
    return clips


def _noises() -> list[Clip]:
    makers: dict[str, Callable[[], bytes]] = {
        "white 300 ms": lambda: white(300, 0.3, 1),
        "white 700 ms": lambda: white(700, 0.3, 2),
        "white 700 ms quiet": lambda: white(700, 0.05, 3),
        "pink 400 ms": lambda: pink(400, 0.5, 4),
        "pink 900 ms": lambda: pink(900, 0.5, 5),
        "clicks 600 ms": lambda: clicks(600, RATE, every_ms=100),
        "clicks 1200 ms": lambda: clicks(1200, RATE, every_ms=60),
        "cough": lambda: cough(0.8, 6),
        "cough soft": lambda: cough(0.3, 7),
        "breath 700 ms": lambda: breath(700, 0.15, 8),
        "breath 1000 ms loud": lambda: breath(1000, 0.4, 9),
    }
    return [Clip("noise", name, _cached(f"noise|{name}", make)) for name, make in makers.items()]


def labelled_clips() -> list[Clip]:
    return [
        *_spoken("speech", SENTENCES),
        *_spoken("backchannel", BACKCHANNELS),
        *_spoken("cancel", CANCELS),
        *_noises(),
    ]
