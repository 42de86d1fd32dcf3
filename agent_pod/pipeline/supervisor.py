"""The supervisor: a compliance check of each draft piece of a reply before it is spoken.

A regex deny list runs first (microseconds, no I/O); a piece it lets through
goes to the supervisor LLM, which answers with a small JSON verdict (allow,
veto, or redirect with its own text) within ``budgetMs``. A verdict that is
late, malformed, or lost to a provider error is replaced by ``onTimeout``
(allow or block). The speech gate starts a check the moment the chunker cuts a
piece, so checks overlap the main LLM's streaming and the playout of earlier
pieces (docs/speech-gate.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import pipeline_metrics
from ..config import LLMProvider, SupervisorSpec
from ..conversation import ChatMessage
from ..providers.base import LLM, ProviderError
from ..providers.registry import provider_class
from ..providers.shared import per_pod

log = logging.getLogger(__name__)

VerdictKind = Literal["allow", "veto", "redirect"]
Source = Literal["rule", "llm", "timeout", "malformed"]

# Appended to the configured prompt: the contract parse_verdict enforces.
VERDICT_FORMAT = (
    "You see one piece of a voice agent's draft reply before it is spoken, with the caller's words and "
    "the reply drafted before it. Answer with one JSON object and nothing else: "
    '{"verdict": "allow"} to let it be spoken, {"verdict": "veto", "reason": "..."} to stop it, or '
    '{"verdict": "redirect", "text": "...", "reason": "..."} to speak your text instead.'
)


class Verdict(BaseModel):
    """What the supervisor LLM answers."""

    model_config = ConfigDict(extra="forbid")

    verdict: VerdictKind
    text: str = Field(default="", max_length=1000)
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _redirect_has_text(self) -> Verdict:
        if self.verdict == "redirect" and not self.text.strip():
            raise ValueError("a redirect needs text")
        return self


class Check(BaseModel):
    """One draft piece as checked, for the turn's compliance record."""

    model_config = ConfigDict(extra="forbid")

    draft: str
    verdict: VerdictKind
    source: Source
    spoken: str = Field(description="What is spoken in the draft's place (the draft itself when allowed).")
    reason: str = ""
    latency_ms: float


def deny_match(rules: list[re.Pattern[str]], text: str) -> re.Pattern[str] | None:
    return next((r for r in rules if r.search(text)), None)


def parse_verdict(raw: str) -> Verdict | None:
    """The verdict in the LLM's answer (tolerating a Markdown fence around it); None when malformed."""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return Verdict.model_validate_json(raw[start : end + 1])
    except ValidationError:
        return None


def fallback_verdict(on_timeout: Literal["allow", "block"]) -> VerdictKind:
    return "allow" if on_timeout == "allow" else "veto"


def spoken_for(verdict: VerdictKind, draft: str, redirect: str, safe_line: str) -> str:
    """What replaces ``draft`` under ``verdict``."""
    if verdict == "allow":
        return draft
    return redirect if verdict == "redirect" else safe_line


def supervisor_messages(prompt: str, caller: str, before: str, draft: str) -> list[ChatMessage]:
    payload = json.dumps({"caller": caller, "reply_before": before, "draft": draft}, ensure_ascii=False)
    return [
        ChatMessage(role="system", content=f"{prompt}\n\n{VERDICT_FORMAT}"),
        ChatMessage(role="user", content=payload),
    ]


def shared_llm(choice: LLMProvider) -> LLM:
    """The supervisor model, built once per pod and shared by its sessions."""
    llm: LLM = per_pod("supervisor", choice, lambda: provider_class("llm", choice.provider)(choice))
    return llm


class Supervisor:
    def __init__(self, spec: SupervisorSpec, llm: LLM | None) -> None:
        self.spec = spec
        self.llm = llm
        self._rules = [re.compile(r, re.IGNORECASE) for r in spec.rules]

    @classmethod
    def build(cls, spec: SupervisorSpec | None) -> Supervisor | None:
        if spec is None:
            return None
        return cls(spec, shared_llm(spec.llm) if spec.llm is not None else None)

    def check_rules(self, draft: str) -> Check | None:
        """The deny list's verdict, at once; None when the LLM (if any) has to decide."""
        started = time.monotonic()
        if (rule := deny_match(self._rules, draft)) is not None:
            return self._verdict(draft, started, "veto", "rule", "", f"deny rule {rule.pattern!r}")
        if self.llm is None:
            return self._verdict(draft, started, "allow", "rule", "", "")
        return None

    async def check(self, caller: str, before: str, draft: str) -> Check:
        """The LLM's verdict on ``draft``; never raises (a failed check is a timeout, with the policy
        applied)."""
        started = time.monotonic()
        return self._verdict(draft, started, *await self._ask_llm(caller, before, draft))

    def _verdict(
        self, draft: str, started: float, verdict: VerdictKind, source: Source, redirect: str, reason: str
    ) -> Check:
        latency = time.monotonic() - started
        pipeline_metrics.SUPERVISOR_CHECK_SECONDS.observe(latency)
        pipeline_metrics.SUPERVISOR_VERDICTS_TOTAL.labels(verdict, source).inc()
        return Check(
            draft=draft,
            verdict=verdict,
            source=source,
            spoken=spoken_for(verdict, draft, redirect, self.spec.safe_line),
            reason=reason,
            latency_ms=latency * 1000,
        )

    async def _ask_llm(self, caller: str, before: str, draft: str) -> tuple[VerdictKind, Source, str, str]:
        fallback = fallback_verdict(self.spec.on_timeout)
        try:
            async with asyncio.timeout(self.spec.budget_ms / 1000):
                raw = await self._ask(supervisor_messages(self.spec.prompt, caller, before, draft))
        except TimeoutError:
            return fallback, "timeout", "", f"no verdict within {self.spec.budget_ms} ms"
        except ProviderError as exc:
            log.warning("supervisor LLM failed: %s", exc)
            return fallback, "timeout", "", f"supervisor failed: {exc}"
        verdict = parse_verdict(raw)
        if verdict is None:
            log.warning("supervisor answered a malformed verdict: %r", raw[:200])
            return fallback, "malformed", "", "malformed verdict"
        return verdict.verdict, "llm", verdict.text.strip(), verdict.reason

    async def _ask(self, messages: list[ChatMessage]) -> str:
        assert self.llm is not None
        stream = self.llm.stream(messages, [])
        try:
            return "".join([chunk.text async for chunk in stream])
        finally:
            # Past the budget: close the HTTP stream now rather than when the generator is collected.
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()
