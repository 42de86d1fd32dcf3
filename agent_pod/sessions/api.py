"""The session API every pod serves: HTTP/JSON (aiohttp routes) and gRPC SessionService.

    POST /v1/sessions                      {"metadata": {...}, "audioSocket": false} -> 201 grant
    POST /v1/sessions/{session_id}/resume  {"resumeToken": "..."}    -> 200 grant
    POST /v1/keys                          {"ttlSeconds": 300}       -> 201 short-lived browser key
    POST /v1/sessions/{session_id}/transfer {"target": ...}        -> 202 (agent_pod/transfer/api.py)
    POST /v1/memory/delete                 {"callerKey": "..."}      -> 200 {"deleted": bool}

The caller's credential (API key or JWT) travels as ``Authorization: Bearer <credential>`` (gRPC:
``authorization`` metadata); a fleet that requires one refuses calls without it (sessions/gate.py).
Without required auth, a resume may still send its resume token as the Bearer value.

A grant names the owning pod's gRPC address and WebRTC URL plus the resume token: the credential
that opens the session's media. With ``"audioSocket": true`` (an agent with transport.audioSocket) it
also carries ``audioSocketUuid``: the UUID a PBX dials with AudioSocket to join this session.

Errors are JSON ``{"error": {"code", "message"}}`` with the statuses
of sessions/refusals.py: 400 bad input, 401 no/unknown/expired credential or token, 403 a credential
without the scope or of another tenant, 404 an ended session, 429 a tenant over its quota and 503
no room or Redis down (both with ``Retry-After``). gRPC gets the matching status codes, with a
``retry-after`` trailer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from voicefleet.v1 import session_pb2, session_pb2_grpc

from ..config import Model
from ..context.persistence import CallerMemory
from ..transports.cors import CorsPolicy, Handler
from .directory import AdmissionError, Grant, SessionAllocator
from .gate import SessionGate
from .refusals import grpc_refusal, http_error, http_refusal

log = logging.getLogger("voicefleet.sessions.api")

Metadata = dict[str, str]


class CreateBody(Model):
    metadata: Metadata = Field(default_factory=dict, max_length=32)
    # The session is to be joined by a PBX over AudioSocket: the grant carries the UUID to dial.
    audio_socket: bool = False


# Binds a created session to the AudioSocket UUID that joins it (telephony/audiosocket.py).
AudioSocketJoin = Callable[[Grant], Awaitable[uuid.UUID]]


class ResumeBody(Model):
    resume_token: str | None = Field(default=None, max_length=512)


class KeyBody(Model):
    ttl_seconds: int | None = Field(default=None, ge=1, le=3600)


class MemoryDeleteBody(Model):
    # In the body, not the URL: a caller key (a phone number) stays out of access logs.
    caller_key: str = Field(min_length=1, max_length=1024)


class MemoryDeleted(Model):
    deleted: bool


class BrowserKey(Model):
    key: str
    expires_unix: int
    tenant: str


def check_metadata(metadata: Metadata) -> None:
    """A session's metadata within bounds (CreateSession, or StartSession of an unplaced session)."""
    if len(metadata) > 32:
        raise AdmissionError("invalid_argument", "at most 32 metadata entries")
    for key, value in metadata.items():
        if not key or len(key) > 128 or len(value) > 1024:
            raise AdmissionError("invalid_argument", "metadata keys must be 1-128 chars, values at most 1024")


async def _json_body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()  # already read and bounded by the pod's body guard (http_guard.py: 413)
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


def grpc_bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip() or None
    return None


def refusing(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
    """``handler`` with its refusals (and any failure) answered as the shared JSON errors."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AdmissionError as exc:
            return http_refusal(exc)
        except Exception:
            log.exception("session API failed")
            return http_error("internal", "internal error; the failure was logged")

    return answer


def session_routes(
    directory: SessionAllocator,
    gate: SessionGate,
    cors: CorsPolicy,
    memory: CallerMemory | None = None,
    audio_socket: AudioSocketJoin | None = None,
) -> list[web.RouteDef]:
    async def create_session(request: web.Request) -> web.Response:
        create: CreateBody = await _json_body(request, CreateBody)
        check_metadata(create.metadata)
        if create.audio_socket and audio_socket is None:
            raise AdmissionError("invalid_argument", "this agent takes no AudioSocket calls")
        grant = await gate.create(_bearer(request), directory, create.metadata)
        body = grant.dump()
        if create.audio_socket and audio_socket is not None:
            body["audioSocketUuid"] = str(await audio_socket(grant))
        return web.json_response(body, status=201)

    async def resume_session(request: web.Request) -> web.Response:
        body: ResumeBody = await _json_body(request, ResumeBody)
        credential = _bearer(request)
        token = body.resume_token or request.headers.get("Voicefleet-Resume-Token")
        if not token and not gate.spec.required:
            token, credential = credential, None  # the pre-auth style: the token as Bearer
        grant = await gate.resume(credential, directory, request.match_info["session_id"], token)
        return web.json_response(grant.dump(), status=200)

    async def mint_key(request: web.Request) -> web.Response:
        body: KeyBody = await _json_body(request, KeyBody)
        principal = await gate.auth.authenticate(_bearer(request), "keys:issue")
        key, expires = gate.auth.mint_browser_key(principal, body.ttl_seconds)
        minted = BrowserKey(key=key, expires_unix=expires, tenant=principal.tenant)
        return web.json_response(minted.dump(), status=201)

    async def delete_memory(request: web.Request) -> web.Response:
        """Forget what the agent remembers of a caller across calls (memory.persistence)."""
        body: MemoryDeleteBody = await _json_body(request, MemoryDeleteBody)
        await gate.auth.authenticate(_bearer(request), "memory:delete")
        if memory is None:
            raise AdmissionError("not_found", "this agent keeps no caller memory (memory.persistence)")
        try:
            deleted = await memory.delete(body.caller_key)
        except RedisError:
            raise AdmissionError("unavailable", "the session store is unreachable", 1.0) from None
        return web.json_response(MemoryDeleted(deleted=deleted).dump(), status=200)

    return [
        *cors.routes("POST", "/v1/memory/delete", refusing(delete_memory)),
        *cors.routes("POST", "/v1/sessions", refusing(create_session)),
        *cors.routes("POST", "/v1/sessions/{session_id}/resume", refusing(resume_session)),
        *cors.routes("POST", "/v1/keys", refusing(mint_key)),
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


# SessionService/TransferSession: (credential, request) -> reply, or AdmissionError (agent_pod/transfer).
TransferHandler = Callable[
    [str | None, session_pb2.TransferSessionRequest], Awaitable[session_pb2.TransferSessionReply]
]


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """voicefleet.v1.SessionService on grpc.aio; add it with ``add_session_service(server, ...)``."""

    def __init__(
        self, directory: SessionAllocator, gate: SessionGate, transfer: TransferHandler | None = None
    ) -> None:
        self.directory = directory
        self.gate = gate
        self.transfer = transfer

    async def CreateSession(
        self, request: session_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.SessionGrant:
        try:
            metadata = dict(request.metadata)
            check_metadata(metadata)
            return grant_message(await self.gate.create(grpc_bearer(context), self.directory, metadata))
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
            raise  # abort raises; this keeps type checkers satisfied

    async def ResumeSession(
        self, request: session_pb2.ResumeSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.SessionGrant:
        try:
            grant = await self.gate.resume(
                grpc_bearer(context), self.directory, request.session_id, request.resume_token or None
            )
            return grant_message(grant)
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
            raise

    async def TransferSession(
        self, request: session_pb2.TransferSessionRequest, context: grpc.aio.ServicerContext
    ) -> session_pb2.TransferSessionReply:
        try:
            if self.transfer is None:
                raise AdmissionError("invalid_argument", "this server does not transfer calls")
            return await self.transfer(grpc_bearer(context), request)
        except AdmissionError as exc:
            await grpc_refusal(context, exc)
            raise


def add_session_service(
    server: grpc.aio.Server,
    directory: SessionAllocator,
    gate: SessionGate,
    transfer: TransferHandler | None = None,
) -> None:
    session_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(directory, gate, transfer), server)
