"""The carriers' incoming-call webhook: POST /v1/telephony/{carrier}/voice.

It creates the call's session through the session API's own create (credential, tenant quota,
placement on a pod with room), then answers with the carrier's instructions that connect the call's
media stream to the chosen pod, carrying the session id and resume token:

- Twilio: TwiML ``<Connect><Stream url>`` with ``<Parameter>``s (they arrive in ``start.customParameters``).
- Telnyx: TeXML, the same with ``bidirectionalMode="rtp"``.
- Plivo: XML ``<Stream bidirectional="true">`` whose URL carries them as its query.
- Vonage: an NCCO ``connect`` to a ``websocket`` endpoint (L16 16 kHz) with them as ``headers``.

Twilio signs its requests (X-Twilio-Signature: HMAC-SHA1 of the URL and the sorted form parameters
with the account's auth token); with ``twilioAuthTokenSecretRef`` set, a request without a valid
signature is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree as ET

from aiohttp import web

from ..config import TelephonySpec
from ..providers.credentials import resolve_credential
from ..sessions.directory import AdmissionError, Grant, SessionAllocator
from ..sessions.gate import SessionGate
from ..sessions.refusals import http_error, http_refusal
from .carriers import Carrier

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# The call's id in each carrier's webhook parameters, kept as the session's metadata.
CALL_ID_FIELDS = ("CallSid", "CallUUID", "call_control_id", "uuid", "CallControlId")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a request to ``url`` with form ``params``."""
    data = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


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
        if request.content_length and request.content_length > MAX_BODY_BYTES:
            return http_error("invalid_argument", f"request body is larger than {MAX_BODY_BYTES} bytes")
        params = await self._params(request)
        if carrier == "twilio" and not self._signed(request, params):
            log.warning("twilio webhook refused: bad signature", extra={"carrier": carrier})
            return http_error("permission_denied", "X-Twilio-Signature does not match")
        call_id = next((params[f] for f in CALL_ID_FIELDS if params.get(f)), "")
        metadata = {"carrier": carrier, **({"callId": call_id[:256]} if call_id else {})}
        try:
            grant = await self.gate.create(None, self.directory, metadata)
        except AdmissionError as exc:
            return http_refusal(exc)
        body, content_type = instructions(carrier, stream_url(self.spec, grant, carrier), grant)
        log.info(
            "incoming call answered",
            extra={"carrier": carrier, "session_id": grant.session_id, "pod": grant.pod},
        )
        return web.Response(text=body, content_type=content_type)

    async def _params(self, request: web.Request) -> dict[str, str]:
        if request.content_type == "application/json":
            raw = await request.read()
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def _signed(self, request: web.Request, params: Mapping[str, str]) -> bool:
        ref = self.spec.twilio_auth_token_secret_ref
        if ref is None:
            return True  # no token configured: unsigned (docs/telephony.md: never in production)
        token = resolve_credential(ref, "TWILIO_AUTH_TOKEN")
        if token is None:
            log.error("twilio auth token secret is not mounted", extra={"secret": ref.name})
            return False
        url = self.spec.public_url.rstrip("/") + request.path_qs if self.spec.public_url else str(request.url)
        expected = twilio_signature(token, url, params)
        return hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature", ""))
