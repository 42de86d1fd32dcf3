"""WHIP-style HTTP signaling for the WebRTC transport.

POST /v1/webrtc (or /v1/sessions/{session_id}/webrtc) with an SDP offer, as
``application/sdp`` (resume token, if any, as ``Authorization: Bearer``) or as JSON
``{"sdp", "type", "session_id", "resume_token", "accepts_migration"}``; a caller following a migration
sends ``migration_token`` (or a ``Voicefleet-Migration-Token`` header) instead of the resume token.
A caller that follows migration offers says so with ``"accepts_migration": true`` (or the header
``Voicefleet-Accepts-Migration: true``): a draining pod moves only such calls (docs/migration.md).
The answer comes back with 201, a ``Location`` to DELETE to hang up, and the session id (and,
for a new session, its resume token) in headers. JSON requests get a JSON answer.

These routes answer cross-origin requests (CORS, any origin, no cookies: the tokens are the
credential): a web page follows its call to another pod (another origin) when the call migrates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from ..sessions.directory import AdmissionError
from . import transport_metrics
from .webrtc import OfferError, WebRTCTransport

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024
_ADMISSION_STATUS = {
    "unauthenticated": 401,
    "unavailable": 503,
    "wrong_pod": 409,
    "not_found": 404,
    "invalid_argument": 400,
}


# CORS for the signaling routes only. No credentials (cookies) are involved: a session's tokens travel
# in the body or in headers, so any origin may call; the browser is told which headers it may send
# and which of the answer's it may read.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Voicefleet-Session-Id, Voicefleet-Resume-Token",
}
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, Voicefleet-Migration-Token, Voicefleet-Accepts-Migration"
    ),
    "Access-Control-Max-Age": "600",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors(handler: Handler) -> Handler:
    """``handler`` with the CORS headers on every answer it gives."""

    async def with_cors(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(CORS_HEADERS)
        return response

    return with_cors


def preflight(methods: str) -> Handler:
    """The answer to a CORS preflight (OPTIONS) for a route taking ``methods``."""

    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(
            status=204, headers={**CORS_PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": methods}
        )

    return answer


class OfferRequest(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)
    type: Literal["offer"] = "offer"
    session_id: str | None = None
    resume_token: str | None = None
    migration_token: str | None = Field(default=None, max_length=256)
    accepts_migration: bool = False


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def accepts_migration_header(request: web.Request) -> bool:
    return request.headers.get("Voicefleet-Accepts-Migration", "").strip().lower() in ("1", "true", "yes")


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def read_offer(request: web.Request) -> tuple[OfferRequest, bool]:
    """The offer and whether the caller speaks JSON. Raises OfferError."""
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise OfferError(f"offer larger than {MAX_SDP_BYTES} bytes")
    body = await request.read()  # read whole, within the app's size limit and timeout (http_guard)
    if len(body) > MAX_SDP_BYTES:
        raise OfferError(f"offer larger than {MAX_SDP_BYTES} bytes")
    if request.content_type == "application/json":
        try:
            return OfferRequest.model_validate_json(body), True
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise OfferError(f"invalid offer JSON: {problems}") from exc
    if request.content_type != "application/sdp":
        raise OfferError("send the offer as application/sdp or application/json")
    try:
        sdp = body.decode()
    except UnicodeDecodeError as exc:
        raise OfferError("the SDP offer is not UTF-8 text") from exc
    if not sdp.strip():
        raise OfferError("empty SDP offer")
    return OfferRequest(sdp=sdp, resume_token=bearer_token(request)), False


class Signaling:
    def __init__(self, transport: WebRTCTransport) -> None:
        self.transport = transport

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/webrtc", cors(self.post_offer)),
            web.options("/v1/webrtc", preflight("POST, OPTIONS")),
            web.post("/v1/sessions/{session_id}/webrtc", cors(self.post_offer)),
            web.options("/v1/sessions/{session_id}/webrtc", preflight("POST, OPTIONS")),
            web.delete("/v1/webrtc/{resource_id}", cors(self.delete)),
            web.options("/v1/webrtc/{resource_id}", preflight("DELETE, OPTIONS")),
        ]

    async def post_offer(self, request: web.Request) -> web.Response:
        try:
            offer, wants_json = await read_offer(request)
            session_id = request.match_info.get("session_id") or offer.session_id
            answer = await self.transport.answer(
                offer.sdp,
                session_id,
                offer.resume_token or bearer_token(request),
                offer.migration_token or request.headers.get("Voicefleet-Migration-Token"),
                accepts_migration=offer.accepts_migration or accepts_migration_header(request),
            )
        except OfferError as exc:
            transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "offer").inc()
            return error_response(400, "invalid_offer", str(exc))
        except AdmissionError as exc:
            headers = {}
            if exc.retry_after_seconds is not None:
                headers["Retry-After"] = str(max(1, round(exc.retry_after_seconds)))
            return error_response(_ADMISSION_STATUS.get(exc.code, 503), exc.code, str(exc), headers)
        location = f"/v1/webrtc/{answer.resource_id}"
        headers = {"Location": location, "Voicefleet-Session-Id": answer.session_id}
        if answer.resume_token:
            headers["Voicefleet-Resume-Token"] = answer.resume_token
        if wants_json:
            return web.json_response(
                {**answer.model_dump(), "location": location}, status=201, headers=headers
            )
        return web.Response(status=201, text=answer.sdp, content_type="application/sdp", headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        if await self.transport.hangup(request.match_info["resource_id"]):
            return web.Response(status=204)
        return error_response(404, "not_found", "no such WebRTC session on this pod")
