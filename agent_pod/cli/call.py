"""`voicefleet call`: dial an agent over gRPC or WebRTC, speak a WAV file, print what happens."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import aiohttp

from ..client.caller_audio import read_wav, speech_ends
from ..client.grpc_client import GrpcCaller
from ..client.record import CallRecorder, CallSummary
from ..client.webrtc_client import WebRTCCaller

# Silence after the WAV so the agent's voice activity detection sees the caller's turn end.
TRAILING_SILENCE_SECONDS = 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "call", help="call an agent: stream a WAV in real time, print transcripts and latencies"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--grpc", metavar="HOST:PORT", help="the pod's gRPC address")
    target.add_argument("--webrtc", metavar="URL", help="signaling URL, e.g. http://127.0.0.1:8080/v1/webrtc")
    p.add_argument("--wav", help="16-bit PCM WAV to say (any rate, mono or stereo)")
    p.add_argument("--text", action="append", default=[], help="text input to send (repeatable)")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the agent's answers")
    p.add_argument("--session-id", default="", help="resume this session")
    p.add_argument("--resume-token", default="", help="resume token of --session-id")
    p.add_argument(
        "--api-key",
        default=os.environ.get("VOICEFLEET_API_KEY"),
        help="API key or JWT for a new session (default: $VOICEFLEET_API_KEY)",
    )
    p.set_defaults(func=run)


def print_event(kind: str, fields: dict[str, Any]) -> None:
    if kind == "user_transcript" and fields.get("final"):
        print(f"you:    {fields.get('text', '')}", flush=True)
    elif kind == "agent_text" and fields.get("final"):
        suffix = " [interrupted]" if fields.get("interrupted") else ""
        print(f"agent:  {fields.get('played_text') or fields.get('text', '')}{suffix}", flush=True)
    elif kind == "turn_metrics":
        print(
            f"turn:   response latency {float(fields.get('response_latency_ms', 0)):.0f} ms (pod)", flush=True
        )
    elif kind == "tool":
        print(f"tool:   {fields.get('name')} {fields.get('state')}", flush=True)
    elif kind == "error":
        print(f"error:  {fields.get('code')}: {fields.get('message')}", file=sys.stderr, flush=True)
    elif kind == "session_started":
        print(f"session {fields.get('session_id')}", flush=True)
    elif kind == "session_ended":
        print(f"ended:  {fields.get('reason')}", flush=True)


async def call(args: argparse.Namespace) -> CallSummary:
    recorder = CallRecorder(on_event=print_event)
    caller: GrpcCaller | WebRTCCaller
    if args.grpc:
        caller = GrpcCaller(
            args.grpc,
            recorder=recorder,
            session_id=args.session_id,
            resume_token=args.resume_token,
            api_key=args.api_key,
        )
    else:
        caller = WebRTCCaller(
            args.webrtc,
            recorder=recorder,
            session_id=args.session_id or None,
            resume_token=args.resume_token or None,
            api_key=args.api_key,
        )
    async with caller:
        expected_answers = len(args.text)
        spoken_turns = 0
        for text in args.text:
            caller.send_text(text)
        if args.wav:
            pcm = read_wav(args.wav, caller.sample_rate) + bytes(
                int(caller.sample_rate * TRAILING_SILENCE_SECONDS) * 2
            )
            ends = speech_ends(pcm, caller.sample_rate)
            expected_answers += len(ends)
            spoken_turns = len(ends)
            await caller.play(pcm, ends)
        try:
            await recorder.wait(
                lambda s: (
                    (len(s.agent_texts) >= expected_answers and len(s.latencies) >= min(1, spoken_turns))
                    or s.ended is not None
                ),
                args.wait,
            )
        except TimeoutError:
            print(f"(stopped waiting after {args.wait:g} s)", file=sys.stderr)
        await caller.end()
    summary = recorder.summary
    for latency in summary.latencies:
        print(
            f"latency: {latency.latency_ms:.0f} ms from your end of speech to the agent's first audio",
            flush=True,
        )
    return summary


def run(args: argparse.Namespace) -> int:
    try:
        summary = asyncio.run(call(args))
    except (ConnectionError, OSError, TimeoutError, aiohttp.ClientError) as exc:
        print(f"call failed: {exc}", file=sys.stderr)
        return 2
    return 0 if summary.agent_texts else 1
