"""The OpenAI SDK client of a provider choice, and its failures as ProviderError.

Retries are off: the stage's fallback chain is the retry policy, and a retry
would spend the caller's turn on a provider that just failed.
"""

from __future__ import annotations

import logging

import httpx2
import openai

from ..config import ProviderChoice
from .base import ProviderError
from .credentials import resolve_credential

log = logging.getLogger(__name__)

# What the SDK raises: its own errors, raw transport errors while a streamed body is read,
# and ValueError (JSON or schema) for a body that is not what the API defines.
SDK_ERRORS: tuple[type[Exception], ...] = (openai.OpenAIError, httpx2.HTTPError, ValueError)

# Sent when no key is configured but a base URL is: OpenAI-compatible servers often need none.
_NO_KEY = "unused"


def make_client(choice: ProviderChoice, what: str) -> openai.AsyncOpenAI | None:
    """None when there is no key for the public API (every call then fails over)."""
    key = resolve_credential(choice.credentials_secret_ref, "OPENAI_API_KEY")
    if key is None and not choice.base_url:
        log.warning("openai %s: no API key (credentialsSecretRef or OPENAI_API_KEY); it will fail over", what)
        return None
    return openai.AsyncOpenAI(
        api_key=key or _NO_KEY,
        base_url=choice.base_url or None,
        timeout=choice.timeout_seconds,
        max_retries=0,
    )


def require(client: openai.AsyncOpenAI | None, what: str) -> openai.AsyncOpenAI:
    if client is None:
        raise ProviderError(f"openai {what}: no API key configured")
    return client


def provider_error(what: str, exc: Exception) -> ProviderError:
    """A ProviderError naming the failure without echoing request details (keys, prompts)."""
    if isinstance(exc, openai.APIStatusError):
        code = f" {exc.code}" if exc.code else ""
        detail = f"HTTP {exc.status_code}{code}"
    elif isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        detail = "timed out"
    elif isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f"connection failed ({type(cause).__name__})" if cause else "connection failed"
    elif isinstance(exc, ValueError):
        detail = f"malformed response ({type(exc).__name__})"
    else:
        detail = type(exc).__name__
    return ProviderError(f"openai {what}: {detail}")
