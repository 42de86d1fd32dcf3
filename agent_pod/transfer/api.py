"""The session API's transfer trigger, served by every agent pod over HTTP and gRPC:

    POST /v1/sessions/{session_id}/transfer  {"target": "billing", "policy": "full", "reason": "..."}
        -> 202 {"sessionId", "target", "policy", "state": "moving"}
    voicefleet.v1.SessionService/TransferSession (TransferSessionRequest -> TransferSessionReply)

The credential needs the ``sessions:transfer`` scope and the session's tenant. The pod that serves the
call acts; over HTTP any other pod of the agent forwards the request to it (found through the call's
pin), over gRPC it refuses with FAILED_PRECONDITION and the owner's address in the
``voicefleet-grpc-address`` trailer (409 wrong_pod when no live pod serves the call). Accepted means the
target was checked and the move started; it happens at the next quiet moment, and the caller's stream
follows it (a MigrationOffer). Refusals: 403 a target not in ``spec.transfer.targets`` (or no
``spec.transfer``), 404 an agent with no pod in this Redis, 503 a target without a ready pod.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from pydantic import Field, ValidationError

from voicefleet.v1 import session_pb2

from ..config import AgentName, ContextPolicy, Model
from ..sessions.api import _bearer, _json_body, refusing
from ..sessions.directory import AdmissionError, TransferRefused, check_session_id
from ..sessions.gate import SessionGate
from ..transports.cors import CorsPolicy
from ..transports.hub import SessionHub
from .tool import TransferRequest, now_ms

# How each refusal reaches an API caller (codes of sessions/refusals.py).
REFUSAL_CODES = {
    "not_enabled": "permission_denied",
    "not_allowed": "permission_denied",
    "same_agent": "invalid_argument",
    "caller_cannot_follow": "invalid_argument",
    "unknown_target": "not_found",
}
RETRY_SECONDS = 2.0
FORWARDED_HEADER = "Voicefleet-Forwarded"
FORWARD_TIMEOUT_SECONDS = 10.0


class TransferBody(Model):
    target: AgentName
    policy: ContextPolicy | None = Field(default=None, description="Default: spec.transfer.contextPolicy.")
    reason: str = Field(default="", max_length=500)


class TransferAccepted(Model):
    session_id: str
    target: str
    policy: ContextPolicy
    state: str = "moving"


class NotServedHere(Exception):
    """The call is not live on this pod."""


def as_admission_error(exc: TransferRefused) -> AdmissionError:
    code = REFUSAL_CODES.get(exc.reason, "unavailable")
    retry = RETRY_SECONDS if code == "unavailable" else None
    return AdmissionError(code, f"{exc.reason}: {exc.message}", retry)


class TransferService:
    def __init__(self, hub: SessionHub, gate: SessionGate) -> None:
        self.hub = hub
        self.gate = gate

    async def start(self, credential: str | None, session_id: str, body: TransferBody) -> TransferAccepted:
        """Check the request and start the move of a call live here; raise AdmissionError, or
        NotServedHere."""
        check_session_id(session_id)
        await self.gate.authorize_transfer(credential, session_id)
        live = self.hub.find(session_id)
        if live is None:
            raise NotServedHere(session_id)
        spec = self.hub.config.transfer
        policy = body.policy or (spec.context_policy if spec is not None else "summary")
        ask = TransferRequest(
            target=body.target, reason=body.reason, policy=policy, trigger="api", decided_unix_ms=now_ms()
        )
        try:
            await self.hub.transfers.request(live, ask)
        except TransferRefused as exc:
            raise as_admission_error(exc) from None
        return TransferAccepted(session_id=session_id, target=body.target, policy=policy)

    # ----- HTTP ------------------------------------------------------------------------------

    def routes(self, cors: CorsPolicy) -> list[web.RouteDef]:
        async def transfer(request: web.Request) -> web.Response:
            session_id = request.match_info["session_id"]
            body: TransferBody = await _json_body(request, TransferBody)
            try:
                accepted = await self.start(_bearer(request), session_id, body)
            except NotServedHere:
                return await self._forward(request, session_id, body)
            return web.json_response(accepted.dump(), status=202)

        return [*cors.routes("POST", "/v1/sessions/{session_id}/transfer", refusing(transfer))]

    async def _forward(self, request: web.Request, session_id: str, body: TransferBody) -> web.Response:
        """Hand the request to the pod that serves the call (once: a forwarded request is not forwarded)."""
        owner = (
            None if request.headers.get(FORWARDED_HEADER) else await self.hub.directory.call_owner(session_id)
        )
        if owner is None or not owner.http_url:
            raise AdmissionError(
                "wrong_pod", "the call is not live on this pod, nor known live on another one"
            )
        headers = {FORWARDED_HEADER: "1"}
        if auth := request.headers.get("Authorization"):
            headers["Authorization"] = auth
        url = f"{owner.http_url}/v1/sessions/{session_id}/transfer"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS)) as http,
                http.post(url, json=body.dump(), headers=headers) as resp,
            ):
                return web.Response(
                    status=resp.status, body=await resp.read(), content_type="application/json"
                )
        except (aiohttp.ClientError, TimeoutError):
            raise AdmissionError(
                "unavailable", "the pod serving the call did not answer", RETRY_SECONDS
            ) from None

    # ----- gRPC (SessionService/TransferSession) ----------------------------------------------------------

    async def grpc(
        self, credential: str | None, request: session_pb2.TransferSessionRequest
    ) -> session_pb2.TransferSessionReply:
        try:
            body = TransferBody.model_validate(
                {"target": request.target, "policy": request.policy or None, "reason": request.reason}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise AdmissionError("invalid_argument", f"invalid request: {where}: {first['msg']}") from None
        try:
            accepted = await self.start(credential, request.session_id, body)
        except NotServedHere:
            owner = await self.hub.directory.call_owner(request.session_id)
            if owner is None:
                raise AdmissionError(
                    "wrong_pod", "the call is not live on this pod, nor known live on another one"
                ) from None
            raise AdmissionError(
                "wrong_pod",
                f"the call is served by pod {owner.name} ({owner.grpc_address}); ask it there",
                grpc_address=owner.grpc_address,
            ) from None
        return session_pb2.TransferSessionReply(
            session_id=accepted.session_id,
            target=accepted.target,
            policy=accepted.policy,
            state=accepted.state,
        )
