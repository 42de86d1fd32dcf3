"""Checks of the carriers' webhook signatures (pure functions of the request and the shared key).

- Twilio: ``X-Twilio-Signature`` = base64 HMAC-SHA1, keyed with the auth token, of the URL followed by
  the form parameters sorted by name (name then value, no separators).
- Telnyx: ``telnyx-signature-ed25519`` = base64 Ed25519 signature of ``"{telnyx-timestamp}|{body}"``
  with the account's key pair; the public key (base64) verifies it; stale timestamps are refused.
- Vonage: ``Authorization: Bearer <JWT>`` signed HS256 with the account's signature secret; its
  ``payload_hash`` claim is the SHA-256 (hex) of the body.
- Plivo (V3): ``X-Plivo-Signature-V3`` = base64 HMAC-SHA256, keyed with the auth token, of
  ``"{signed url}.{X-Plivo-Signature-V3-Nonce}"``. For a POST the signed URL is the URL without its query,
  then ``?`` and the query's ``name=value`` pairs sorted and joined by ``&`` (``?`` only when there is a
  query or a form), a ``.`` when there are both, then the form parameters sorted by name (name then value,
  no separators). The header may carry several signatures, comma-separated (a main account's and a
  subaccount's): one match is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TELNYX_TOLERANCE_SECONDS = 300


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a request to ``url`` with form ``params``."""
    data = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    return hmac.compare_digest(twilio_signature(auth_token, url, params), signature)


def telnyx_valid(public_key: str, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    try:
        if abs(now - int(timestamp)) > TELNYX_TOLERANCE_SECONDS:
            return False
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(signature), timestamp.encode() + b"|" + body)
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


def vonage_valid(secret: str, authorization: str, body: bytes) -> bool:
    if not authorization.lower().startswith("bearer "):
        return False
    try:
        claims = jwt.decode(authorization[7:].strip(), secret, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return False
    expected = hashlib.sha256(body).hexdigest()
    return not body or hmac.compare_digest(str(claims.get("payload_hash", "")), expected)


def plivo_v3_signature(auth_token: str, url: str, params: Mapping[str, str], nonce: str) -> str:
    """X-Plivo-Signature-V3 of a POST to ``url`` with form ``params``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    signed = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    pairs = "&".join(f"{name}={value}" for name in sorted(query) for value in sorted(query[name]))
    if pairs or params:
        signed += "?" + pairs
    if pairs and params:
        signed += "."
    signed += "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), f"{signed}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def plivo_v3_valid(auth_token: str, url: str, params: Mapping[str, str], nonce: str, header: str) -> bool:
    if not nonce or not header:
        return False
    expected = plivo_v3_signature(auth_token, url, params, nonce)
    return any(hmac.compare_digest(expected, given.strip()) for given in header.split(","))
