"""The session API every pod serves: HTTP/JSON (aiohttp routes) and gRPC SessionService.

    POST /v1/sessions                      {"metadata": {...}}       -> 201 grant
    POST /v1/sessions/{session_id}/resume  {"resumeToken": "..."}    -> 200 grant
         (or the token as ``Authorization: Bearer <token>``)

A grant names the owning pod's gRPC address and WebRTC URL plus the resume
token. Errors are JSON ``{"error": {"code", "message"}}``: 400 bad input, 401 a
wrong/expired/missing token, 404 an ended session, 503 no room or Redis down
(with ``Retry-After``). The gRPC service maps the same errors to status codes,
with a ``retry-after`` trailer.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from voicefleet.v1 import session_pb2, session_pb2_grpc

from ..config import Model
from .directory import AdmissionError, Grant, SessionAllocator
from .refusals import grpc_refusal, http_error, http_refusal

log = logging.getLogger("voicefleet.sessions.api")

MAX_BODY_BYTES = 64 * 1024
Metadata = dict[str, str]


class CreateBody(Model):
    metadata: Metadata = Field(default_factory=dict, max_length=32)


class ResumeBody(Model):
    resume_token: str | None = Field(default=None, max_length=512)


def _check_metadata(metadata: Metadata) -> None:
    for key, value in metadata.items():
        if not key or len(key) > 128 or len(value) > 1024:
            raise AdmissionError("invalid_argument", "metadata keys must be 1-128 chars, values at most 1024")


async def _json_body(request: web.Request, model: type[BaseModel]) -> Any:
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        raise AdmissionError("invalid_argument", f"request body is larger than {MAX_BODY_BYTES} bytes")
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise AdmissionError("invalid_argument", f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise AdmissionError("invalid_argument", f"invalid request: {where}: {first['msg']}") from None


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if not auth.lower().startswith("bearer "):
        return None
    return auth[7:].strip() or None


def session_routes(directory: SessionAllocator) -> list[web.RouteDef]:
    async def handle(request: web.Request, resume: bool) -> web.Response:
        try:
            if resume:
                body: ResumeBody = await _json_body(request, ResumeBody)
                token = body.resume_token or _bearer(request)
                grant = await directory.resume(request.match_info["session_id"], token)
                return web.json_response(grant.dump(), status=200)
            create: CreateBody = await _json_body(request, CreateBody)
            _check_metadata(create.metadata)
            grant = await directory.create(create.metadata)
            return web.json_response(grant.dump(), status=201)
        except AdmissionError as exc:
            return http_refusal(exc)
        except Exception:
            log.exception("session API failed")
            return http_error("internal", "internal error; the failure was logged")

    async def create_session(request: web.Request) -> web.Response:
        return await handle(request, resume=False)

    async def resume_session(request: web.Request) -> web.Response:
        return await handle(request, resume=True)

    return [
        web.post("/v1/sessions", create_session),
        web.post("/v1/sessions/{session_id}/resume", resume_session),
    ]


def grant_message(grant: Grant) -> session_pb2.SessionGrant:
    return session_pb2.SessionGrant(
        session_id=grant.session_id,
        resume_token=grant.resume_token,
        pod=grant.pod,
        grpc_address=grant.grpc_address,
        webrtc_url=grant.webrtc_url,
        resumed=grant.resumed,
        token_expires_unix=grant.token_expires_unix,
    )


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """voicefleet.v1.SessionService on grpc.aio; add it with ``add_session_service(server, directory)``."""

    def __init__(self, directory: SessionAllocator) -> None:
        self.directory = directory

    async def CreateSession(
        self, request: session_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.SessionGrant:
        try:
            metadata = dict(request.metadata)
            if len(metadata) > 32:
                raise AdmissionError("invalid_argument", "at most 32 metadata entries")
            _check_metadata(metadata)
            return grant_message(await self.directory.create(metadata))
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
            raise  # abort raises; this keeps type checkers satisfied

    async def ResumeSession(
        self, request: session_pb2.ResumeSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.SessionGrant:
        try:
            return grant_message(
                await self.directory.resume(request.session_id, request.resume_token or None)
            )
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
            raise


def add_session_service(server: grpc.aio.Server, directory: SessionAllocator) -> None:
    session_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(directory), server)
