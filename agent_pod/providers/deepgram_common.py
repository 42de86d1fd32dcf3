"""The Deepgram SDK client of a provider choice, and its failures as ProviderError.

The SDK's retries are off: the stage's fallback chain is the retry policy.
"""

from __future__ import annotations

import logging

import httpx
import websockets.exceptions
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError

from ..config import ProviderChoice
from .base import ProviderError
from .credentials import resolve_credential

log = logging.getLogger(__name__)

# What a call can raise: HTTP status errors, transport errors of the REST (httpx) and
# WebSocket (websockets) clients, refused connections and handshake deadlines.
SDK_ERRORS: tuple[type[Exception], ...] = (
    ApiError,
    httpx.HTTPError,
    websockets.exceptions.WebSocketException,
    OSError,
    TimeoutError,
)


def environment_for(base_url: str) -> DeepgramClientEnvironment:
    """The SDK's endpoints for ``base_url`` (REST on http(s)://, streaming on ws(s)://)."""
    if not base_url:
        return DeepgramClientEnvironment.PRODUCTION
    rest = base_url.rstrip("/")
    socket = "ws" + rest.removeprefix("http")  # http -> ws, https -> wss
    return DeepgramClientEnvironment(base=rest, production=socket, agent=socket, agent_rest=rest)


def make_client(choice: ProviderChoice, what: str) -> AsyncDeepgramClient | None:
    """None without a key (every call then fails over)."""
    key = resolve_credential(choice.credentials_secret_ref, "DEEPGRAM_API_KEY")
    if key is None:
        log.warning(
            "deepgram %s: no API key (credentialsSecretRef or DEEPGRAM_API_KEY); it will fail over", what
        )
        return None
    return AsyncDeepgramClient(
        api_key=key,
        environment=environment_for(choice.base_url),
        timeout=choice.timeout_seconds,
        max_retries=0,
    )


def sample_rate_option(options: dict[str, str], default: int) -> int:
    """``options["sample_rate"]`` in Hz, checked so a typo fails with a clear message at startup."""
    raw = options.get("sample_rate")
    if raw is None:
        return default
    if not raw.isdigit() or not 8000 <= int(raw) <= 48000:
        raise ValueError(f"deepgram: options.sample_rate must be a rate in Hz (8000-48000), got {raw!r}")
    return int(raw)


def require(client: AsyncDeepgramClient | None, what: str) -> AsyncDeepgramClient:
    if client is None:
        raise ProviderError(f"deepgram {what}: no API key configured")
    return client


def provider_error(what: str, exc: Exception) -> ProviderError:
    """A ProviderError naming the failure; never the request headers (they carry the key)."""
    if isinstance(exc, ApiError):
        code = exc.body.get("err_code") if isinstance(exc.body, dict) else None
        detail = f"HTTP {exc.status_code}" + (f" {code}" if code else "")
    elif isinstance(exc, TimeoutError | httpx.TimeoutException):
        detail = "timed out"
    elif isinstance(exc, websockets.exceptions.ConnectionClosed):
        frame = exc.rcvd
        detail = f"connection closed ({frame.code} {frame.reason})" if frame else "connection lost"
    elif isinstance(exc, ConnectionError | httpx.ConnectError):
        detail = f"connection failed ({type(exc).__name__})"
    else:
        detail = type(exc).__name__
    return ProviderError(f"deepgram {what}: {detail}")
