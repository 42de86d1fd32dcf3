"""The compliance check's confusion table: honest turns against turns whose played audio was tampered with.

Each turn is a record's played text and the audio that was played. Honest: espeak-ng speaks the
recorded text. Tampered: it speaks something else: one word replaced, one word dropped, one word
added, or a different sentence. Voices and speeds vary, and each clip is played clean, with pink
noise (15 dB SNR), and through the phone path (8 kHz mu-law and back). Every turn goes through the
pod's check (forced alignment against the played text, pauses judged against a free phone loop,
``agent_pod/pipeline/alignment.py``).

The margins are calibrated on the training sentences (the even-numbered ones): the grid point with
the most tampered turns caught among those flagging at most 1% of the honest ones. The table is
of the test sentences (the odd-numbered ones) only, with those floors. CPU is the check's own
(process time per second of audio, phone loop included). For comparison, the old check (open
re-transcription, WER > 0.5) runs on a sample of the test turns (it costs ~8x the check).

    python -m bench.divergence [--sentences 40] [--wer-stride 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from agent_pod.pipeline.alignment import Alignment, Floors, check
from agent_pod.pipeline.compliance import word_error_rate
from agent_pod.providers.sphinx import (
    align,
    make_aligner,
    make_decoder,
    phone_loop,
    pronounceable,
    transcribe,
    words_of,
)
from bench.overlap_clips import _cached, pink
from bench.report import percentile, print_records, write_json
from tests.support.audio import espeak_utterance

RATE = 16000
SENTENCES = (
    "your table for two is booked for eight tonight",
    "I have cancelled the order and the refund will arrive within five days",
    "the clinic opens at nine tomorrow morning",
    "please hold while I check your account",
    "your flight leaves from gate twelve at half past three",
    "I can move your appointment to Thursday afternoon",
    "the package was delivered to your front door this morning",
    "we have no rooms left for that weekend",
    "your balance is forty two dollars and ten cents",
    "would you like me to send a confirmation by email",
    "the technician will arrive between noon and four",
    "I am sorry but that item is out of stock",
    "your password has been reset and a new link is on its way",
    "the store closes at six on Sundays",
    "I have added a second bag to your reservation",
    "the doctor can see you next Monday at ten",
    "your subscription renews on the first of every month",
    "let me transfer you to our billing team",
    "the train to Boston is running twenty minutes late",
    "I found three flights that match your search",
    "your order number is on the receipt we sent you",
    "the pharmacy has your prescription ready for pickup",
    "you can return the shoes within thirty days",
    "I will call you back as soon as the manager is free",
    "the weather in Denver will be sunny with a high of seventy",
    "your claim has been approved and the payment is on its way",
    "the museum is free for children under twelve",
    "I have booked a taxi to pick you up at the hotel",
    "the repair will cost about two hundred dollars",
    "your loan application needs one more signature",
    "the meeting has been moved to the large conference room",
    "we accept all major credit cards and cash",
    "your car will be ready after lunch",
    "the hotel offers a free breakfast every morning",
    "I could not find a booking under that name",
    "the next bus to the airport leaves in ten minutes",
    "your internet service will be restored by tonight",
    "the concert starts at eight and the doors open at seven",
    "I have updated your address in our records",
    "thank you for calling and have a wonderful day",
)
# Words said instead of, or in addition to, the recorded ones: short and long, content and function words.
SWAPS = ("never", "refund", "seven", "Friday", "cancel", "free", "not", "double", "London", "urgent",
         "maybe", "twenty", "blue", "extra", "closed", "all")  # fmt: skip
VOICES = ("en-us", "en-gb", "en-us+f3", "en-us+m3")
SPEEDS = (150, 190)
VARIANTS = ("clean", "noise", "phone")
KINDS = ("honest", "replaced", "dropped", "added", "different")
GRID_WORD = (-20.0, -25.0, -30.0, -35.0, -40.0, -50.0, -60.0, -80.0, -100.0)
GRID_PAUSE = (-300.0, -400.0, -500.0, -600.0, -700.0, -800.0, -1000.0, -1200.0, -1500.0, -2000.0)
TARGET_FALSE_FLAGS = 0.01


@dataclass
class Turn:
    split: str  # train | test
    kind: str
    variant: str
    voice: str
    speed: int
    record: str  # the played text in the record
    spoken: str  # what the audio says
    audio: bytes = b""
    memo: dict[tuple[str, ...], Alignment | None] = field(default_factory=dict)
    free: list[float] = field(default_factory=list)  # the phone loop's score per frame
    cpu_s: float = 0.0


def _tamper(kind: str, words: list[str], other: str, rng: random.Random) -> str:
    if kind == "different":
        return other
    i = rng.randrange(len(words))
    swap = rng.choice([w for w in SWAPS if w.lower() != words[i].lower()])
    if kind == "replaced":
        return " ".join([*words[:i], swap, *words[i + 1 :]])
    if kind == "dropped":
        return " ".join(words[:i] + words[i + 1 :])
    return " ".join([*words[:i], swap, *words[i:]])


def _variant(pcm: bytes, variant: str, seed: int) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if variant == "noise":
        noise = np.frombuffer(pink(len(x) * 1000 // RATE + 1, 1.0, seed), dtype="<i2")[: len(x)].astype(float)
        noise *= np.sqrt(np.mean(x**2) / max(np.mean(noise**2), 1.0)) / 10 ** (15 / 20)
        x = x + noise
    elif variant == "phone":
        narrow = soxr.resample(x / 32768, RATE, 8000)
        mu = np.sign(narrow) * np.log1p(255 * np.minimum(np.abs(narrow), 1)) / np.log1p(255)
        mu = np.round(mu * 127) / 127  # the 8-bit code
        narrow = np.sign(mu) * np.expm1(np.abs(mu) * np.log1p(255)) / 255
        x = soxr.resample(narrow, 8000, RATE) * 32768
    return np.asarray(np.clip(x, -32768, 32767), dtype="<i2").tobytes()


def _speak(text: str, voice: str, speed: int) -> bytes:
    return _cached(f"divergence|{text}|{voice}|{speed}", lambda: espeak_utterance(text, RATE, voice, speed))


def turns(sentences: int, seed: int = 7) -> list[Turn]:
    """Honest turns in every voice, speed and variant; tampered ones in every variant, one voice and
    speed each (taken in turn), so each tamper kind has as many turns as the honest class has per voice."""
    rng = random.Random(seed)
    chosen = SENTENCES[:sentences]
    out: list[Turn] = []
    combos = list(itertools.product(VOICES, SPEEDS))
    for n, sentence in enumerate(chosen):
        split = "train" if n % 2 == 0 else "test"
        same_split = [s for m, s in enumerate(chosen) if m % 2 == n % 2 and s != sentence]
        for variant in VARIANTS:
            for voice, speed in combos:
                out.append(Turn(split, "honest", variant, voice, speed, sentence, sentence))
            for k, kind in enumerate(KINDS[1:]):
                voice, speed = combos[(n + k + VARIANTS.index(variant)) % len(combos)]
                spoken = _tamper(kind, sentence.split(), rng.choice(same_split), rng)
                out.append(Turn(split, kind, variant, voice, speed, sentence, spoken))
    for i, turn in enumerate(out):
        turn.audio = _variant(_speak(turn.spoken, turn.voice, turn.speed), turn.variant, i)
    return out


def _aligner(decoder: Any, turn: Turn) -> Any:
    def aligned(words: list[str]) -> Alignment | None:
        key = tuple(words)
        if key not in turn.memo:
            turn.memo[key] = align(decoder, words, turn.audio)
        return turn.memo[key]

    return aligned


def _verdicts(decoder: Any, data: list[Turn], floors: Floors) -> list[tuple[Turn, list[str]]]:
    return [(t, check(words_of(t.record), _aligner(decoder, t), t.free, floors)[0]) for t in data]


def _rates(verdicts: list[tuple[Turn, list[str]]]) -> tuple[float, float]:
    honest = [bool(d) for t, d in verdicts if t.kind == "honest"]
    tampered = [bool(d) for t, d in verdicts if t.kind != "honest"]
    return sum(honest) / max(len(honest), 1), sum(tampered) / max(len(tampered), 1)


def calibrate(decoder: Any, train: list[Turn]) -> Floors:
    """The grid point with the most catches among those within the false-flag target (or, when none
    is, with the fewest false flags above it)."""
    best: tuple[float, float, Floors] | None = None
    for word, pause in itertools.product(GRID_WORD, GRID_PAUSE):
        floors = Floors(word, pause)
        false_flags, caught = _rates(_verdicts(decoder, train, floors))
        key = (-max(false_flags - TARGET_FALSE_FLAGS, 0.0), caught)
        if best is None or key > (best[0], best[1]):
            best = (*key, floors)
    assert best is not None
    return best[2]


def open_wer_rates(test: list[Turn], stride: int) -> dict[str, Any]:
    """The old check on every ``stride``-th test turn: the open re-transcription's WER > 0.5 flags."""
    decoder = make_decoder()
    sample = random.Random(3).sample(test, len(test) // stride)
    start = time.process_time()
    flagged = [(t, word_error_rate(t.record, transcribe(decoder, t.audio)) > 0.5) for t in sample]
    seconds = sum(len(t.audio) / 2 / RATE for t in sample)
    honest = [f for t, f in flagged if t.kind == "honest"]
    tampered = [f for t, f in flagged if t.kind != "honest"]
    return {
        "turns": len(sample),
        "false_flag_rate": sum(honest) / max(len(honest), 1),
        "catch_rate": sum(tampered) / max(len(tampered), 1),
        "cpu_ms_per_audio_s": (time.process_time() - start) / max(seconds, 1e-9) * 1000,
    }


def tradeoff(decoder: Any, test: list[Turn]) -> list[dict[str, Any]]:
    """False flags against catches on the test turns as the word margin moves (no pause rule): what the
    word rule can do at all, not a tuning."""
    return [
        dict(
            zip(
                ("word margin", "false flags %", "caught %"),
                (w, *(100 * r for r in _rates(_verdicts(decoder, test, Floors(w, -1e12))))),
                strict=True,
            )
        )
        for w in GRID_WORD
    ]


def bench(args: argparse.Namespace) -> dict[str, Any]:
    decoder = make_aligner()
    data = turns(args.sentences)
    assert all(pronounceable(decoder, words_of(t.record)) for t in data)
    for turn in data:  # the first pass of each turn, timed as the pod runs it (no memo yet)
        start = time.process_time()
        turn.free = phone_loop(decoder, turn.audio)
        check(words_of(turn.record), _aligner(decoder, turn), turn.free, Floors())
        turn.cpu_s = time.process_time() - start
    floors = calibrate(decoder, [t for t in data if t.split == "train"])
    test = [t for t in data if t.split == "test"]
    verdicts = _verdicts(decoder, test, floors)
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        for variant in (*VARIANTS, "all"):
            group = [d for t, d in verdicts if t.kind == kind and variant in (t.variant, "all")]
            flagged = sum(bool(d) for d in group)
            rows.append(
                {
                    "class": kind,
                    "variant": variant,
                    "turns": len(group),
                    "flagged": flagged,
                    "not flagged": len(group) - flagged,
                    "flagged %": 100.0 * flagged / max(len(group), 1),
                }
            )
    false_flags, caught = _rates(verdicts)
    exact = [
        t
        for t, d in verdicts
        if t.kind == "replaced" and len(d) == 1 and d[0] not in t.spoken.lower().split()
    ]
    per_second = [t.cpu_s / (len(t.audio) / 2 / RATE) * 1000 for t in test]
    return {
        "floors": {"word": floors.word, "pause": floors.pause},
        "train_turns": len(data) - len(test),
        "test_turns": len(test),
        "false_flag_rate": false_flags,
        "catch_rate": caught,
        "replaced_word_named": len(exact) / max(sum(t.kind == "replaced" for t, _ in verdicts), 1),
        "check_cpu_ms_per_audio_s": {
            "p50": percentile(per_second, 0.5),
            "p95": percentile(per_second, 0.95),
            "honest_p50": percentile(
                [c for t, c in zip(test, per_second, strict=True) if t.kind == "honest"], 0.5
            ),
        },
        "open_wer_check": open_wer_rates(test, args.wer_stride),
        "table": rows,
        "tradeoff_word_margin_only": tradeoff(decoder, test),
        "missed": [
            {"kind": t.kind, "variant": t.variant, "voice": t.voice, "record": t.record, "spoken": t.spoken}
            for t, d in verdicts
            if t.kind != "honest" and not d
        ],
        "false_flags": [
            {"variant": t.variant, "voice": t.voice, "speed": t.speed, "record": t.record, "divergent": d}
            for t, d in verdicts
            if t.kind == "honest" and d
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=len(SENTENCES), help="how many of the sentences")
    parser.add_argument(
        "--wer-stride", type=int, default=6, help="the old WER check on 1 in N test turns (it is slow)"
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    result = bench(args)
    print_records(result["table"])
    print()
    print_records(result["tradeoff_word_margin_only"])
    print(
        f"\ntest turns {result['test_turns']} (calibrated on {result['train_turns']}): "
        f"margins {result['floors']}\n"
        f"false flags {100 * result['false_flag_rate']:.2f}%  caught {100 * result['catch_rate']:.2f}%  "
        f"replaced word named {100 * result['replaced_word_named']:.1f}%\n"
        f"check CPU ms per audio second: {result['check_cpu_ms_per_audio_s']}; "
        f"the old open-WER check on a sample: {result['open_wer_check']}"
    )
    for miss in result["missed"]:
        print("missed:", miss)
    for flag in result["false_flags"]:
        print("false flag:", flag)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
