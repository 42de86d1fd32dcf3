"""The carriers' incoming-call webhook: POST /v1/telephony/{carrier}/voice.

It creates the call's session through the session API's own create (credential, tenant quota,
placement on a pod with room), then answers with the carrier's instructions that connect the call's
media stream to the chosen pod, carrying the session id and resume token:

- Twilio: TwiML ``<Connect><Stream url>`` with ``<Parameter>``s (they arrive in ``start.customParameters``).
- Telnyx: TeXML, the same with ``bidirectionalMode="rtp"``.
- Plivo: XML ``<Stream bidirectional="true">`` whose URL carries them as its query.
- Vonage: an NCCO ``connect`` to a ``websocket`` endpoint (L16 16 kHz) with them as ``headers``.

Where the carrier signs its requests and the key is configured (Twilio's and Plivo's auth tokens, Telnyx's
public key, Vonage's signature secret: signatures.py), a request without a valid signature is refused
with 403.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree as ET

from aiohttp import web

from ..config import TelephonySpec
from ..providers.credentials import resolve_credential
from ..sessions.directory import AdmissionError, Grant, SessionAllocator
from ..sessions.gate import SessionGate
from ..sessions.refusals import http_error, http_refusal
from .carriers import Carrier
from .signatures import plivo_v3_valid, telnyx_valid, twilio_valid, vonage_valid

log = logging.getLogger(__name__)

# The call's id in each carrier's webhook parameters, kept as the session's metadata.
CALL_ID_FIELDS = ("CallSid", "CallUUID", "call_control_id", "uuid", "CallControlId")


def stream_url(spec: TelephonySpec, grant: Grant, carrier: Carrier) -> str:
    """The chosen pod's media stream URL for ``carrier``."""
    if spec.stream_url_template:
        return spec.stream_url_template.format(pod=grant.pod, carrier=carrier)
    origin = urlsplit(grant.webrtc_url)
    scheme = "wss" if origin.scheme == "https" else "ws"
    return f"{scheme}://{origin.netloc}/v1/telephony/{carrier}/stream"


def instructions(carrier: Carrier, url: str, grant: Grant) -> tuple[str, str]:
    """The body and content type that connect the call's media to ``url``."""
    params = {"sessionId": grant.session_id, "resumeToken": grant.resume_token}
    if carrier == "vonage":
        endpoint = {
            "type": "websocket",
            "uri": url,
            "content-type": "audio/l16;rate=16000",
            "headers": params,
        }
        return json.dumps([{"action": "connect", "endpoint": [endpoint]}]), "application/json"
    response = ET.Element("Response")
    if carrier == "plivo":
        stream = ET.SubElement(
            response,
            "Stream",
            bidirectional="true",
            keepCallAlive="true",
            contentType="audio/x-mulaw;rate=8000",
        )
        stream.text = f"{url}?{urlencode(params)}"
    else:
        attrs = {"url": url} if carrier == "twilio" else {"url": url, "bidirectionalMode": "rtp"}
        stream = ET.SubElement(ET.SubElement(response, "Connect"), "Stream", attrs)
        for name, value in params.items():
            ET.SubElement(stream, "Parameter", name=name, value=value)
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(response, encoding="unicode")
    return body, "application/xml"


class Webhooks:
    def __init__(self, spec: TelephonySpec, directory: SessionAllocator, gate: SessionGate) -> None:
        self.spec = spec
        self.directory = directory
        self.gate = gate

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/telephony/{carrier}/voice", self.answer)]

    async def answer(self, request: web.Request) -> web.StreamResponse:
        carrier = request.match_info["carrier"]
        if carrier not in self.spec.carriers:
            return http_error("not_found", f"carrier {carrier[:40]!r} is not enabled")
        body = await request.read()  # already read and bounded by the pod's body guard (http_guard.py)
        params = _params(request.content_type, body)
        refusal = self._unsigned(carrier, request, params, body)
        if refusal is not None:
            log.warning("webhook refused: %s", refusal, extra={"carrier": carrier})
            return http_error("permission_denied", refusal)
        call_id = next((params[f] for f in CALL_ID_FIELDS if params.get(f)), "")
        metadata = {"carrier": carrier, **({"callId": call_id[:256]} if call_id else {})}
        try:
            # The carrier's signature says who calls; the configured API key whose tenant the call counts for.
            credential = resolve_credential(self.spec.credential_secret_ref, "VOICEFLEET_TELEPHONY_API_KEY")
            grant = await self.gate.create(credential, self.directory, metadata)
        except AdmissionError as exc:
            return http_refusal(exc)
        answer, content_type = instructions(carrier, stream_url(self.spec, grant, carrier), grant)
        log.info(
            "incoming call answered",
            extra={"carrier": carrier, "session_id": grant.session_id, "pod": grant.pod},
        )
        return web.Response(text=answer, content_type=content_type)

    def _unsigned(
        self, carrier: str, request: web.Request, params: Mapping[str, str], body: bytes
    ) -> str | None:
        """Why the request's signature is refused; None when it is valid or the carrier's key is not set
        (docs/telephony.md: never so in production)."""
        spec, headers = self.spec, request.headers
        # Twilio and Plivo sign the URL they called: behind a proxy, the configured public one.
        url = spec.public_url.rstrip("/") + request.path_qs if spec.public_url else str(request.url)
        if carrier == "twilio" and spec.twilio_auth_token_secret_ref is not None:
            token = resolve_credential(spec.twilio_auth_token_secret_ref, "TWILIO_AUTH_TOKEN")
            if token is None or not twilio_valid(token, url, params, headers.get("X-Twilio-Signature", "")):
                return "X-Twilio-Signature does not match"
        if carrier == "plivo" and spec.plivo_auth_token_secret_ref is not None:
            token = resolve_credential(spec.plivo_auth_token_secret_ref, "PLIVO_AUTH_TOKEN")
            nonce = headers.get("X-Plivo-Signature-V3-Nonce", "")
            signature = headers.get("X-Plivo-Signature-V3", "")
            if token is None or not plivo_v3_valid(token, url, params, nonce, signature):
                return "X-Plivo-Signature-V3 does not match"
        if carrier == "telnyx" and spec.telnyx_public_key_secret_ref is not None:
            key = resolve_credential(spec.telnyx_public_key_secret_ref, "TELNYX_PUBLIC_KEY")
            timestamp = headers.get("telnyx-timestamp", "")
            signature = headers.get("telnyx-signature-ed25519", "")
            if key is None or not telnyx_valid(key, timestamp, signature, body, time.time()):
                return "telnyx-signature-ed25519 does not verify (or telnyx-timestamp is stale)"
        if carrier == "vonage" and spec.vonage_signature_secret_ref is not None:
            secret = resolve_credential(spec.vonage_signature_secret_ref, "VONAGE_SIGNATURE_SECRET")
            if secret is None or not vonage_valid(secret, headers.get("Authorization", ""), body):
                return "the Authorization JWT is not signed with the signature secret"
        return None


def _params(content_type: str, body: bytes) -> dict[str, str]:
    """The webhook's parameters: a JSON object's string fields, or the form's fields."""
    if content_type == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
