"""Resume tokens: HMAC-SHA256 over (session id, expiry), checked in constant time.

A session id is not a secret (it shows up in logs and URLs); the token is what
proves a caller owns the call. The key comes from a mounted Secret file
(VOICEFLEET_RESUME_KEY_FILE) shared by every pod of the fleet, so any pod can
verify a token another pod issued. Redis stores only ``token_hash(token)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path

from ..config import Model

TOKEN_VERSION = "v1"
MIN_KEY_BYTES = 16
MAX_TOKEN_CHARS = 256
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# One spelling per token: ASCII digits without leading zeros, unpadded base64url of 32 bytes.
TOKEN_PATTERN = re.compile(r"^v1\.([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})$", re.ASCII)


class TokenError(Exception):
    """The token is missing, malformed, forged or expired (the caller gets UNAUTHENTICATED / 401)."""


class IssuedToken(Model):
    token: str
    expires_unix: int


def token_hash(token: str) -> str:
    """What Redis keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID_PATTERN.fullmatch(session_id))


class ResumeTokens:
    """Issues and verifies resume tokens with one fleet-wide key."""

    def __init__(self, key: bytes, ttl_seconds: float) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"resume key must hold at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        if ttl_seconds <= 0:
            raise ValueError("resume token ttl must be positive")
        self._key = key
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_file(cls, path: str | Path, ttl_seconds: float) -> ResumeTokens:
        """Read the key from a mounted Secret (surrounding whitespace such as a final newline is ignored)."""
        try:
            key = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the resume key file {path}: {exc.strerror}") from exc
        try:
            return cls(key, ttl_seconds)
        except ValueError as exc:
            raise ValueError(f"resume key file {path}: {exc}") from exc

    @classmethod
    def ephemeral(cls, ttl_seconds: float) -> ResumeTokens:
        """A random key that lives as long as this process: enough for a single pod without Redis."""
        return cls(secrets.token_bytes(32), ttl_seconds)

    def derive_key(self, purpose: str) -> bytes:
        """A key for another purpose (browser keys), so the resume key itself signs nothing else."""
        return hmac.new(self._key, f"voicefleet {purpose}".encode(), hashlib.sha256).digest()

    def _signature(self, session_id: str, expires_unix: int) -> str:
        message = f"{TOKEN_VERSION}\x00{session_id}\x00{expires_unix}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, session_id: str, now: float | None = None) -> IssuedToken:
        expires = int((time.time() if now is None else now) + self.ttl_seconds)
        token = f"{TOKEN_VERSION}.{expires}.{self._signature(session_id, expires)}"
        return IssuedToken(token=token, expires_unix=expires)

    def verify(self, session_id: str, token: str | None, now: float | None = None) -> int:
        """Return the token's expiry (unix seconds), or raise TokenError."""
        if not token:
            raise TokenError("a resume token is required to join an existing session")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("resume token is malformed")
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise TokenError("resume token is malformed")
        expires = int(match.group(1))
        expected = self._signature(session_id, expires)
        if not hmac.compare_digest(expected.encode(), match.group(2).encode()):
            raise TokenError("resume token does not match this session")
        if expires <= (time.time() if now is None else now):
            raise TokenError("resume token has expired")
        return expires
