"""espeak-ng TTS: an asyncio subprocess per piece of text, its WAV stdout parsed as it streams.

espeak-ng synthesizes far faster than real time, so the first audio arrives
within a few milliseconds of the process start. Text goes in on stdin (never
on the command line, where a leading "-" would read as an option). Options:
``speed`` in words per minute (default 165); ``voice`` defaults to en-us.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator

from ..audio.wav import WavStream, WavStreamError
from ..config import TTSProvider
from .base import ProviderError

READ_BYTES = 8192


class EspeakTTS:
    sample_rate = 22050

    def __init__(self, choice: TTSProvider) -> None:
        self.name = "espeak"
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise ProviderError("espeak-ng is not installed")
        self.binary = binary
        self.voice = choice.voice or "en-us"
        self.speed = int(choice.options.get("speed", "165"))

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--stdout",
            "-v",
            self.voice,
            "-s",
            str(self.speed),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(text.encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
            wav = WavStream()
            carry = b""
            while chunk := await proc.stdout.read(READ_BYTES):
                data = carry + wav.feed(chunk)
                if wav.sample_rate not in (None, self.sample_rate):
                    raise ProviderError(
                        f"espeak-ng produced {wav.sample_rate} Hz, expected {self.sample_rate}"
                    )
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    yield data[:cut]
            code = await proc.wait()
            if code != 0 or wav.sample_rate is None:
                err = (await proc.stderr.read()).decode(errors="replace").strip()
                raise ProviderError(f"espeak-ng exited with {code}: {err or 'no audio'}")
        except WavStreamError as exc:
            raise ProviderError(f"espeak-ng output unreadable: {exc}") from exc
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
