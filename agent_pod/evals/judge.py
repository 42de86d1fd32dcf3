"""The optional LLM judge: any OpenAI-compatible chat endpoint, asked whether a transcript meets a
criterion. It answers JSON ``{"verdict": "pass"|"fail"|"maybe", "reason": "..."}``; a bare verdict
word is tolerated, anything else is ``maybe`` (which grading counts as a failure).

Verdicts are cached on disk under sha256(model, criterion, transcript), so re-running an unchanged
suite against an unchanged agent asks the judge nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal

import openai
from pydantic import BaseModel, Field, ValidationError

from .grading import JudgeRequest, Verdict
from .outcome import JudgeStats

SYSTEM_PROMPT = (
    "You grade one conversation between a caller and a voice agent against one criterion. "
    "Agent lines hold what the caller actually heard. Answer with a JSON object only: "
    '{"verdict": "pass" | "fail" | "maybe", "reason": "<one short sentence>"}. '
    '"pass": the conversation clearly meets the criterion; "fail": it clearly does not; '
    '"maybe": you cannot tell.'
)
VERDICT_WORD = re.compile(r"\b(pass|passes|passed|fail|fails|failed|maybe)\b", re.IGNORECASE)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voicefleet" / "judge"


class JudgeError(Exception):
    """The judge cannot be set up (no API key, ...)."""


class JudgeConfig(BaseModel):
    base_url: str = Field(description="OpenAI-compatible API root, e.g. https://api.openai.com/v1")
    model: str = Field(min_length=1)
    api_key_env: str = "OPENAI_API_KEY"
    cache_dir: Path = Field(default_factory=default_cache_dir)
    timeout_seconds: float = Field(default=60.0, gt=0)


def cache_key(model: str, request: JudgeRequest) -> str:
    material = json.dumps([model, request.criterion, request.transcript])
    return hashlib.sha256(material.encode()).hexdigest()


def parse_verdict(text: str) -> Verdict:
    """The judge's answer as a Verdict: its JSON object, else a lone verdict word, else maybe."""
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start : end + 1])
            return Verdict.model_validate(
                {
                    "verdict": str(data.get("verdict", "")).strip().lower(),
                    "reason": str(data.get("reason", "")),
                }
            )
        except (ValueError, AttributeError, ValidationError):
            pass
    words = {_verdict_of(match.group(1)) for match in VERDICT_WORD.finditer(text)}
    if len(words) == 1:
        return Verdict(verdict=words.pop(), reason=text.strip()[:300])
    return Verdict(verdict="maybe", reason=f"unreadable judge answer: {text.strip()[:200]!r}")


def _verdict_of(word: str) -> Literal["pass", "fail", "maybe"]:
    word = word.lower()
    return "pass" if word.startswith("pass") else "fail" if word.startswith("fail") else "maybe"


class Judge:
    def __init__(self, config: JudgeConfig, client: openai.AsyncOpenAI | None = None) -> None:
        self.config = config
        if client is None:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise JudgeError(f"the judge's API key variable {config.api_key_env} is not set")
            client = openai.AsyncOpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout_seconds)
        self.client = client
        self.stats = JudgeStats(model=config.model)
        self._json_mode = True  # dropped once the endpoint refuses response_format
        self._asking: dict[str, asyncio.Task[Verdict]] = {}

    async def verdicts(self, requests: list[JudgeRequest]) -> dict[JudgeRequest, Verdict]:
        answers = await asyncio.gather(*(self.verdict(r) for r in requests))
        return dict(zip(requests, answers, strict=True))

    async def verdict(self, request: JudgeRequest) -> Verdict:
        key = cache_key(self.config.model, request)
        cached = await asyncio.to_thread(self._read_cache, key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        # Runs of a repeated scenario often ask the same question at once: ask it once.
        task = self._asking.get(key)
        if task is None:
            task = self._asking[key] = asyncio.get_running_loop().create_task(self._ask(key, request))
            task.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(task)

    async def _ask(self, key: str, request: JudgeRequest) -> Verdict:
        self.stats.asked += 1
        try:
            text = await self._complete(request)
        except openai.OpenAIError as exc:
            return Verdict(verdict="maybe", reason=f"judge request failed: {exc}")
        verdict = parse_verdict(text)
        if not verdict.reason.startswith("unreadable judge answer"):
            await asyncio.to_thread(self._write_cache, key, verdict)
        return verdict

    async def _complete(self, request: JudgeRequest) -> str:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": f"Criterion: {request.criterion}\n\nConversation:\n{request.transcript}",
            },
        ]
        if self._json_mode:
            try:
                response = await self.client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    temperature=0,
                    response_format={"type": "json_object"},
                )
                return response.choices[0].message.content or ""
            except openai.BadRequestError as exc:
                if "response_format" not in str(exc):
                    raise
                self._json_mode = False
        response = await self.client.chat.completions.create(
            model=self.config.model, messages=messages, temperature=0
        )
        return response.choices[0].message.content or ""

    def _read_cache(self, key: str) -> Verdict | None:
        path = self.config.cache_dir / f"{key}.json"
        try:
            verdict = Verdict.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            return None
        return verdict.model_copy(update={"cached": True})

    def _write_cache(self, key: str, verdict: Verdict) -> None:
        directory = self.config.cache_dir
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{key}.{os.getpid()}.tmp"
        partial.write_text(verdict.model_dump_json(exclude={"cached"}))
        partial.replace(directory / f"{key}.json")  # atomic: a parallel run never reads half a file

    async def aclose(self) -> None:
        await self.client.close()
