"""What the cloud providers cost on our side: the real SDKs against the local wire servers.

The OpenAI and Deepgram wire servers run as separate processes on loopback, so
the latency here is SDK + HTTP/WebSocket + provider code + loopback, and the CPU
column is this (client) process only. The servers answer at once (scripted LLM
and STT); TTS includes espeak-ng synthesis on the server side.

    python -m bench.cloud_providers [--iterations 50] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from agent_pod.config import LLMProvider, STTProvider, TTSProvider
from agent_pod.conversation import ChatMessage
from agent_pod.providers.deepgram_stt import DeepgramSTT
from agent_pod.providers.deepgram_tts import DeepgramTTS
from agent_pod.providers.openai_llm import OpenAILLM
from agent_pod.providers.openai_tts import OpenAITTS
from bench.report import percentile, write_json
from tests.support.net import free_port
from tests.wire import deepgram_server, openai_server

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "Sure, I can book a table for two at seven tonight. Anything else?"


@asynccontextmanager
async def wire_server(module: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--port", str(port), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)  # the "listening" line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def measure(n: int, once: Callable[[], Awaitable[float]]) -> dict[str, float]:
    """Runs ``once`` n times (after one warm-up); it returns its latency in seconds."""
    await once()
    latencies = []
    cpu0 = time.process_time()
    for _ in range(n):
        latencies.append(await once())
    cpu = time.process_time() - cpu0
    ms = [x * 1000 for x in latencies]
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 0.99),
        "client_cpu_ms_per_call": cpu * 1000 / n,
    }


async def bench(n: int) -> dict[str, dict[str, float]]:
    os.environ["OPENAI_API_KEY"] = openai_server.DEFAULT_KEY
    os.environ["DEEPGRAM_API_KEY"] = deepgram_server.DEFAULT_KEY
    results: dict[str, dict[str, float]] = {}
    async with (
        wire_server("tests.wire.openai_server") as oai,
        wire_server("tests.wire.deepgram_server") as dg,
        aiohttp.ClientSession() as http,
    ):
        llm = OpenAILLM(LLMProvider(provider="openai", model="bench", base_url=f"{oai}/v1"))
        messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="book")]

        async def llm_first_text() -> float:
            await http.post(f"{oai}/_control/chat", json=[{"text": ANSWER, "text_chunk_chars": 4}])
            start = time.perf_counter()
            stream = llm.stream(messages, [])
            first = 0.0
            async for _ in stream:
                first = first or time.perf_counter() - start
            return first

        results["openai llm: first text chunk"] = await measure(n, llm_first_text)

        async def first_audio(tts: OpenAITTS | DeepgramTTS) -> float:
            start = time.perf_counter()
            first = 0.0
            async for _ in tts.synthesize("Your table is booked."):
                first = first or time.perf_counter() - start
            return first

        openai_tts = OpenAITTS(TTSProvider(provider="openai", base_url=f"{oai}/v1"))
        results["openai tts: first audio (espeak on server)"] = await measure(
            n, lambda: first_audio(openai_tts)
        )
        deepgram_tts = DeepgramTTS(TTSProvider(provider="deepgram", base_url=dg))
        results["deepgram tts: first audio (espeak on server)"] = await measure(
            n, lambda: first_audio(deepgram_tts)
        )

        stt = DeepgramSTT(STTProvider(provider="deepgram", base_url=dg))
        await http.post(f"{dg}/_control/transcripts", json=["book a table"] * (n + 1))
        stream = await stt.open_stream()
        events = stream.events()
        second = b"\0" * 32000

        async def finalize_to_final() -> float:
            for i in range(0, len(second), 640):
                await stream.push(second[i : i + 640])
            start = time.perf_counter()
            await stream.finalize()
            async for t in events:
                if t.final:
                    break
            return time.perf_counter() - start

        results["deepgram stt: finalize -> final (1 s utterance)"] = await measure(n, finalize_to_final)
        await stream.aclose()

        async def open_close() -> float:
            start = time.perf_counter()
            s = await stt.open_stream()
            elapsed = time.perf_counter() - start
            await s.aclose()
            return elapsed

        results["deepgram stt: open listen socket"] = await measure(n, open_close)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(bench(args.iterations))
    print(f"{'measure':52} {'p50 ms':>8} {'p99 ms':>8} {'client CPU ms/call':>19}")
    for name, r in results.items():
        print(f"{name:52} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['client_cpu_ms_per_call']:19.2f}")
    write_json(args.json, {"iterations": args.iterations, "results": results})


if __name__ == "__main__":
    main()
