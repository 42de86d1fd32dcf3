"""Phone calls over carrier Media Streams: barge-in clear latency and end of turn -> first media frame.

One in-process agent pod (zero-latency synthetic pipeline, scripted LLM, telephony on) serves N
concurrent calls from the fake carrier (tests/support/carrier.py), each answered through the webhook
and streamed over a real WebSocket on loopback. Each caller says an espeak-ng phrase (mu-law 8 kHz,
real-time 20 ms frames, optional jitter and loss) asking for a story; once the answer has played for a
while it says "stop stop". Measured per call:

- first media: the caller's last frame of speech sent -> the first agent media frame received
  (includes the VAD's end-of-speech silence, minSilenceMs 300 here, as a caller hears it);
- clear: the session's barge-in decision -> the carrier's clear written to the WebSocket (the pod's
  clock; voicefleet_telephony_clear_seconds), target <= 100 ms;
- clear seen: the caller starts saying "stop" -> the clear received (includes the bargeIn.minSpeechMs
  of speech a barge-in needs).

    python -m bench.telephony [--calls 20] [--carrier twilio] [--jitter-ms 0] [--loss 0] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp

from agent_pod.runtime import Pod
from agent_pod.settings import PodSettings
from agent_pod.telephony import mulaw
from bench.report import percentile, print_records, write_json
from tests.support.audio import espeak_utterance
from tests.support.carrier import FakeCarrierCall, call_webhook, parse_answer, ws_params
from tests.support.pod import pod_ports, synthetic_config
from tests.support.wait import async_wait_for

WITHIN = 30.0


async def _true(value: bool) -> bool:
    return value


async def _one_call(
    http: aiohttp.ClientSession, pod: Pod, carrier: str, phrases: dict[str, bytes], seed: int, args: Any
) -> dict[str, float]:
    status, body = await call_webhook(http, pod.http_url, carrier, call_id=f"CA{seed}")
    if status != 200:
        raise RuntimeError(f"webhook answered {status}: {body[:200]}")
    call = FakeCarrierCall(
        carrier, parse_answer(carrier, body), jitter_ms=args.jitter_ms, loss=args.loss, seed=seed
    )
    await call.connect(http)
    await call.speak(phrases["story"], silence_after_ms=500)
    await async_wait_for(lambda: _true(call.played_ms >= 1000), timeout=WITHIN, what="story playing")
    assert call.first_media_at is not None and call.last_voice_sent_at is not None
    first_media = call.first_media_at - call.last_voice_sent_at
    streams = [s for s in (pod.media_streams.streams if pod.media_streams else ()) if s.live is not None]
    await call.speak(phrases["stop"], silence_after_ms=300)
    await async_wait_for(lambda: _true(bool(call.clears)), timeout=WITHIN, what="clear")
    clear_seen = call.clears[0] - (call.speech_started_at or 0.0)
    await call.stop()
    await call.closed.wait()
    # Plivo carries the session id in the stream URL's query, the others in parameters.
    session_id = call.answer.parameters.get("sessionId") or ws_params(call.answer.url).get("sessionId")
    mine = [s for s in streams if s.clear_seconds and s.live and s.live.id == session_id]
    return {
        "first_media_s": first_media,
        "clear_s": mine[0].clear_seconds[0] if mine else float("nan"),
        "clear_seen_s": clear_seen,
    }


async def run(args: Any) -> dict[str, Any]:
    config = synthetic_config(
        "tell me a story",
        telephony={"enabled": True},
        transport={"webrtc": {"enabled": False}},
        sessionsPerPod=args.calls + 10,
    )
    settings = PodSettings(bind_host="127.0.0.1", pod_name="bench-telephony", log_format="text")
    pod = Pod(settings, config, pod_ports())
    phrases = {
        name: mulaw.encode(espeak_utterance(text, rate=8000))
        for name, text in {"story": "please tell me a story", "stop": "stop stop"}.items()
    }
    await pod.start()
    try:
        async with aiohttp.ClientSession() as http:
            results = await asyncio.gather(
                *(_one_call(http, pod, args.carrier, phrases, n, args) for n in range(args.calls)),
                return_exceptions=True,
            )
    finally:
        await pod.stop()
    calls = [r for r in results if isinstance(r, dict)]
    failed = [repr(r) for r in results if not isinstance(r, dict)]
    rows = []
    for key, label in (
        ("clear_s", "clear"),
        ("clear_seen_s", "clear seen"),
        ("first_media_s", "first media"),
    ):
        values = [c[key] * 1000 for c in calls if c[key] == c[key]]
        rows.append(
            {
                "measure": label,
                "p50 ms": percentile(values, 0.5),
                "p99 ms": percentile(values, 0.99),
                "n": len(values),
            }
        )
    return {"carrier": args.carrier, "calls": args.calls, "failed": failed, "rows": rows, "per_call": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--carrier", default="twilio", choices=["twilio", "telnyx", "plivo", "vonage"])
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(f"{args.calls} concurrent {args.carrier} calls, {len(report['failed'])} failed")
    print_records(report["rows"])
    for failure in report["failed"][:5]:
        print("failed:", failure)
    write_json(args.json, report)


if __name__ == "__main__":
    main()
