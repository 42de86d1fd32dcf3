"""The session API's transfer route, served by every agent pod:

    POST /v1/sessions/{session_id}/transfer  {"target": "billing", "policy": "full", "reason": "..."}
        -> 202 {"sessionId", "target", "policy", "state": "moving"}

The credential needs the ``sessions:transfer`` scope and the session's tenant. Any pod of the agent
answers: one that does not serve the call forwards the request to the one that does (found through the
call's pin; 409 wrong_pod when no live pod serves it). 202 means the target
was checked and the move started; it happens at the next quiet moment, and the caller's stream
follows it (a MigrationOffer). Refusals: 403 a target not in ``spec.transfer.targets`` (or no
``spec.transfer``), 404 an agent with no pod in this Redis, 503 a target without a ready pod.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from pydantic import Field

from ..config import AgentName, Model, TransferPolicy
from ..sessions.api import _bearer, _json_body, refusing
from ..sessions.directory import AdmissionError, TransferRefused, check_session_id
from ..sessions.gate import SessionGate
from ..transports.cors import CorsPolicy
from ..transports.hub import SessionHub
from .tool import TransferRequest, now_ms

# How each refusal reaches an HTTP caller (codes of sessions/refusals.py).
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
    policy: TransferPolicy | None = Field(default=None, description="Default: spec.transfer.contextPolicy.")
    reason: str = Field(default="", max_length=500)


class TransferAccepted(Model):
    session_id: str
    target: str
    policy: TransferPolicy
    state: str = "moving"


def as_admission_error(exc: TransferRefused) -> AdmissionError:
    code = REFUSAL_CODES.get(exc.reason, "unavailable")
    retry = RETRY_SECONDS if code == "unavailable" else None
    return AdmissionError(code, f"{exc.reason}: {exc.message}", retry)


async def _forward(
    request: web.Request, hub: SessionHub, session_id: str, body: TransferBody
) -> web.Response:
    """Hand the request to the pod that serves the call (once: a forwarded request is not forwarded)."""
    owner = None if request.headers.get(FORWARDED_HEADER) else await hub.directory.call_owner_url(session_id)
    if owner is None:
        raise AdmissionError("wrong_pod", "the call is not live on this pod, nor known live on another one")
    headers = {FORWARDED_HEADER: "1"}
    if auth := request.headers.get("Authorization"):
        headers["Authorization"] = auth
    url = f"{owner}/v1/sessions/{session_id}/transfer"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS)) as http,
            http.post(url, json=body.dump(), headers=headers) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
    except (aiohttp.ClientError, TimeoutError):
        raise AdmissionError(
            "unavailable", "the pod serving the call did not answer", RETRY_SECONDS
        ) from None


def transfer_routes(hub: SessionHub, gate: SessionGate, cors: CorsPolicy) -> list[web.RouteDef]:
    async def transfer(request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        check_session_id(session_id)
        body: TransferBody = await _json_body(request, TransferBody)
        await gate.authorize_transfer(_bearer(request), session_id)
        live = hub.find(session_id)
        if live is None:
            return await _forward(request, hub, session_id, body)
        spec = hub.config.transfer
        policy = body.policy or (spec.context_policy if spec is not None else "summary")
        ask = TransferRequest(
            target=body.target, reason=body.reason, policy=policy, trigger="api", decided_unix_ms=now_ms()
        )
        try:
            await hub.transfers.request(live, ask)
        except TransferRefused as exc:
            raise as_admission_error(exc) from None
        accepted = TransferAccepted(session_id=session_id, target=body.target, policy=policy)
        return web.json_response(accepted.dump(), status=202)

    return [*cors.routes("POST", "/v1/sessions/{session_id}/transfer", refusing(transfer))]
