"""WHIP-style HTTP signaling for the WebRTC transport.

POST /v1/sessions/{session_id}/webrtc with an SDP offer opens the media of a granted session with
the grant's credential: its resume token (``Authorization: Bearer``, ``Voicefleet-Resume-Token`` or
``resume_token`` in JSON). POST /v1/webrtc without a session id starts a new session on this pod and
needs what a create needs: an API key or JWT as ``Authorization: Bearer`` when the fleet requires one.
Offers come as ``application/sdp`` or as JSON ``{"sdp", "type", "session_id", "resume_token",
"accepts_migration"}``; a caller following a migration sends ``migration_token`` (or a
``Voicefleet-Migration-Token`` header) instead of the resume token.
A caller that follows migration offers says so with ``"accepts_migration": true`` (or the header
``Voicefleet-Accepts-Migration: true``): a draining pod moves only such calls (docs/migration.md).
The answer comes back with 201, a ``Location`` to DELETE to hang up, and the session id (and,
for a new session, its resume token) in headers. JSON requests get a JSON answer.

These routes answer cross-origin requests (CORS, transports/cors.py): a web page follows its call
to another pod (another origin) when the call migrates.
"""

from __future__ import annotations

import logging
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from ..sessions.directory import AdmissionError
from ..sessions.refusals import http_error, http_refusal
from . import transport_metrics
from .cors import CorsPolicy
from .webrtc import OfferError, WebRTCTransport

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


class OfferRequest(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)
    type: Literal["offer"] = "offer"
    session_id: str | None = None
    resume_token: str | None = None
    migration_token: str | None = Field(default=None, max_length=256)
    accepts_migration: bool = False


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
    return OfferRequest(sdp=sdp), False


class Signaling:
    def __init__(self, transport: WebRTCTransport, cors: CorsPolicy) -> None:
        self.transport = transport
        self.cors = cors

    def routes(self) -> list[web.RouteDef]:
        return [
            *self.cors.routes("POST", "/v1/webrtc", self.post_offer),
            *self.cors.routes("POST", "/v1/sessions/{session_id}/webrtc", self.post_offer),
            *self.cors.routes("DELETE", "/v1/webrtc/{resource_id}", self.delete),
        ]

    async def post_offer(self, request: web.Request) -> web.Response:
        try:
            offer, wants_json = await read_offer(request)
            session_id = request.match_info.get("session_id") or offer.session_id
            bearer = bearer_token(request)
            # An existing session opens with its grant's token; a new one with an API credential.
            resume_token = offer.resume_token or request.headers.get("Voicefleet-Resume-Token")
            if session_id and not resume_token:
                resume_token, bearer = bearer, None
            answer = await self.transport.answer(
                offer.sdp,
                session_id,
                resume_token,
                offer.migration_token or request.headers.get("Voicefleet-Migration-Token"),
                accepts_migration=offer.accepts_migration or accepts_migration_header(request),
                credential=None if session_id else bearer,
            )
        except OfferError as exc:
            transport_metrics.BAD_INPUT_TOTAL.labels("webrtc", "offer").inc()
            return http_error("invalid_argument", str(exc))
        except AdmissionError as exc:
            return http_refusal(exc)
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
        return http_error("not_found", "no such WebRTC session on this pod")
