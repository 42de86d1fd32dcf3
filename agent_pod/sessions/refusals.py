"""How a refusal (AdmissionError) reaches a caller: one table for HTTP and gRPC.

The session API, WebRTC signaling and the gRPC stream all answer with this mapping, so a code
means the same status everywhere, Retry-After is rounded the same way (up, at least 1 s) and
every HTTP error body has one shape: ``{"error": {"code", "message", "retryAfterSeconds"?}}``.
An unknown code is a bug: it maps to 500 / INTERNAL rather than to a status a client would retry.
The gRPC column names the status (``grpc.StatusCode[name]``): grpcio is imported only to abort an
RPC, so the knowledge server, which answers HTTP only, runs without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from .directory import AdmissionError

if TYPE_CHECKING:
    import grpc


class Status(NamedTuple):
    http: int
    grpc: str  # a grpc.StatusCode's name


STATUSES: dict[str, Status] = {
    "invalid_argument": Status(400, "INVALID_ARGUMENT"),
    "unauthenticated": Status(401, "UNAUTHENTICATED"),
    "permission_denied": Status(403, "PERMISSION_DENIED"),
    "not_found": Status(404, "NOT_FOUND"),
    "request_timeout": Status(408, "DEADLINE_EXCEEDED"),
    "wrong_pod": Status(409, "FAILED_PRECONDITION"),
    "too_large": Status(413, "INVALID_ARGUMENT"),
    "resource_exhausted": Status(429, "RESOURCE_EXHAUSTED"),
    "unavailable": Status(503, "UNAVAILABLE"),
    "internal": Status(500, "INTERNAL"),
}
UNKNOWN = STATUSES["internal"]


def status_of(code: str) -> Status:
    return STATUSES.get(code, UNKNOWN)


def retry_after_header(seconds: float | None) -> str | None:
    """Whole seconds, rounded up and never 0: a client told "0" would retry at once."""
    if seconds is None:
        return None
    return str(max(1, math.ceil(seconds)))


def error_body(code: str, message: str, retry_after_seconds: float | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after_seconds is not None:
        error["retryAfterSeconds"] = int(retry_after_header(retry_after_seconds) or 0)
    return {"error": error}


def http_error(
    code: str,
    message: str,
    retry_after_seconds: float | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON error answer for ``code``."""
    headers = dict(headers or {})
    retry = retry_after_header(retry_after_seconds)
    if retry is not None:
        headers["Retry-After"] = retry
    return web.json_response(
        error_body(code, message, retry_after_seconds), status=status_of(code).http, headers=headers
    )


def http_refusal(exc: AdmissionError, headers: dict[str, str] | None = None) -> web.Response:
    return http_error(exc.code, exc.message, exc.retry_after_seconds, headers)


def grpc_trailers(exc: AdmissionError) -> tuple[tuple[str, str], ...]:
    trailers: list[tuple[str, str]] = []
    retry = retry_after_header(exc.retry_after_seconds)
    if retry is not None:
        trailers.append(("retry-after", retry))
    if exc.grpc_address:
        trailers.append(("voicefleet-grpc-address", exc.grpc_address))
    return tuple(trailers)


async def grpc_refusal(context: grpc.aio.ServicerContext[Any, Any], exc: AdmissionError) -> None:
    """Abort the RPC with the status for ``exc`` (raises, as ``context.abort`` does)."""
    import grpc  # only where an RPC is refused: the knowledge server has no grpcio

    status = grpc.StatusCode[status_of(exc.code).grpc]
    await context.abort(status, exc.message, trailing_metadata=grpc_trailers(exc))
