"""False and missed interruptions: labelled caller sounds played over the agent's long answer.

Every clip of bench/overlap_clips.py (espeak-ng speech, backchannels and cancel phrases in several
voices and speeds; white, pink, click, cough and breath noise) goes through the real pipeline (VAD,
pocketsphinx with a vocabulary, the session's barge-in logic) while the agent tells a story, one
session per clip, audio stepped in 20 ms frames as a transport does. The action the agent took:

- interrupted: it stopped (Interruption event);
- resumed: it paused (frames held back) and went on where it stopped;
- ignored: it never stopped talking.

Speech and cancel phrases should interrupt (else: a missed interruption); backchannels and noise
should not (else: a false interruption).

    python -m bench.interruptions [--vad silero,webrtc] [--barge-in-ms 300] [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from agent_pod.config import AgentConfig
from agent_pod.providers.base import Providers
from agent_pod.providers.registry import build_providers
from bench.overlap_clips import KINDS, Clip, labelled_clips
from bench.report import percentile, print_table, write_json
from tests.pipeline.harness import FRAME_MS, Harness, make_config
from tests.support.audio import frames, silence

ACTIONS = ("interrupted", "resumed", "ignored")
SHOULD_INTERRUPT = {"speech": True, "cancel": True, "backchannel": False, "noise": False}
VOCABULARY = ["tell me a story", "what time do you open tomorrow", "can you tell me the price first"]


def config_for(vad: str, barge_in_ms: int, baseline: bool = False) -> AgentConfig:
    config = make_config(vad=vad, stt="pocketsphinx", vocabulary=VOCABULARY, barge_in_ms=barge_in_ms)
    config.pipeline.compliance.audit = False  # off the call path, and not what is measured here
    if baseline:  # barge-in as it was: minSpeechMs of voice stops the agent, whatever was said
        barge_in = config.pipeline.barge_in
        barge_in.cancel_phrases, barge_in.backchannels = [], []
        barge_in.resume_false_interruptions = False
    return config


async def run_clip(config: AgentConfig, providers: Providers, clip: Clip) -> dict[str, Any]:
    async with Harness(config, providers) as h:
        h.session.push_text("tell me a story")
        await h.until(lambda: h.session.queued_audio_ms >= 4000, what="story audio")
        for _ in range(25):
            h.step(silence(FRAME_MS))
        held = 0
        for caller_frame in frames(clip.pcm + silence(700)):
            held += h.step(caller_frame) is None
        await h.until(lambda: not h.session.judging_overlap, within=30, what="overlap judged")
        interrupted = bool(h.of_type("interruption"))
        turns = [e.text for e in h.of_type("user_transcript") if e.final][1:]
    action = "interrupted" if interrupted else "resumed" if held else "ignored"
    # For a resumed clip: how long the caller heard the agent stop (frames held back in audio time).
    return {
        "kind": clip.kind,
        "clip": clip.name,
        "action": action,
        "paused_ms": held * FRAME_MS if action == "resumed" else 0,
        "turn": " / ".join(turns),
    }


async def run(vad: str, barge_in_ms: int, clips: list[Clip], baseline: bool) -> list[dict[str, Any]]:
    config = config_for(vad, barge_in_ms, baseline)
    providers = build_providers(config.pipeline)  # decoders are reused from clip to clip
    return [await run_clip(config, providers, clip) for clip in clips]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    table = Counter((r["kind"], r["action"]) for r in results)
    should = [r for r in results if SHOULD_INTERRUPT[r["kind"]]]
    should_not = [r for r in results if not SHOULD_INTERRUPT[r["kind"]]]
    missed = sum(r["action"] != "interrupted" for r in should)
    false = sum(r["action"] == "interrupted" for r in should_not)
    pauses = [r["paused_ms"] for r in results if r["action"] == "resumed"]
    return {
        "confusion": {k: {a: table[(k, a)] for a in ACTIONS} for k in KINDS},
        "false_interruption_rate": false / len(should_not) if should_not else float("nan"),
        "missed_interruption_rate": missed / len(should) if should else float("nan"),
        "resumed_rate": sum(r["action"] == "resumed" for r in should_not) / len(should_not)
        if should_not
        else float("nan"),
        "resumed_pause_ms_p50": percentile(pauses, 0.5),
        "resumed_pause_ms_p95": percentile(pauses, 0.95),
        "clips": len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vad", default="silero", help="comma-separated VADs to run (silero, webrtc)")
    parser.add_argument("--barge-in-ms", type=int, default=300, help="bargeIn.minSpeechMs")
    parser.add_argument("--limit", type=int, default=0, help="only every Nth clip (quick runs)")
    parser.add_argument(
        "--baseline", action="store_true", help="also run barge-in as before: no phrases, no resume"
    )
    parser.add_argument("--verbose", action="store_true", help="print every clip's outcome")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    clips = labelled_clips()
    if args.limit:
        clips = clips[:: args.limit]
    report: dict[str, Any] = {"barge_in_ms": args.barge_in_ms, "runs": {}}
    runs = [(vad, False) for vad in args.vad.split(",")]
    runs += [(vad, True) for vad in args.vad.split(",")] if args.baseline else []
    for vad, baseline in runs:
        started = time.monotonic()
        results = asyncio.run(run(vad, args.barge_in_ms, clips, baseline))
        stats = summary(results)
        label = f"{vad}, baseline" if baseline else vad
        print(
            f"\nVAD {label}, bargeIn.minSpeechMs {args.barge_in_ms}: {len(clips)} clips in "
            f"{time.monotonic() - started:.0f} s"
        )
        print_table(
            ["true class", *ACTIONS],
            [[k, *(stats["confusion"][k][a] for a in ACTIONS)] for k in KINDS],
        )
        print(
            f"false interruptions (backchannel, noise): {stats['false_interruption_rate']:.1%}; "
            f"missed interruptions (speech, cancel): {stats['missed_interruption_rate']:.1%}; "
            f"paused then resumed: {stats['resumed_rate']:.1%} "
            f"(pause p50 {stats['resumed_pause_ms_p50']:.0f} ms, p95 {stats['resumed_pause_ms_p95']:.0f} ms)"
        )
        wrong = [r for r in results if (r["action"] == "interrupted") != SHOULD_INTERRUPT[r["kind"]]]
        for r in results if args.verbose else wrong:
            print(
                f"  {r['kind']:>11} {r['action']:>11}  {r['clip']}"
                + (f"  -> turn {r['turn']!r}" if r["turn"] else "")
            )
        report["runs"][label] = {**stats, "results": results}
    write_json(args.json, report)


if __name__ == "__main__":
    main()
