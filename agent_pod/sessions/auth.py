"""Who is calling: API keys, JWTs and short-lived browser keys turned into a Principal.

API keys look like ``vfk_<id>.<secret>``. Pods never see a key itself: the keyring (a JSON file
from a mounted Secret, written with ``voicefleet keys new``) holds each key's id, tenant, scopes
and SHA-256. Keys have 256 random bits, so a plain hash is enough (no password stretching);
comparison is constant-time. The keyring file is re-read when the Secret changes (rotation
without a restart).

JWTs from an identity provider are verified with PyJWT against a PEM key / HS256 secret from a
Secret, or a JWKS URL (fetched off the event loop, cached). The tenant comes from a claim, the
scopes from ``scope`` (space separated) or ``scp``.

Browser keys are JWTs this fleet mints itself (``POST /v1/keys`` with a ``keys:issue`` key): a
web page gets one that lives minutes, not a long-lived API key. They are signed with a key
derived from the fleet's resume-token key (``ResumeTokens.derive_key``), so every pod verifies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import Field, ValidationError

from ..config import ANONYMOUS_TENANT, SCOPES, AuthSpec, Model, Scope
from . import session_metrics
from .directory import AdmissionError

log = logging.getLogger("voicefleet.auth")

API_KEY_PATTERN = re.compile(r"^vfk_([a-z0-9]{8,32})\.([A-Za-z0-9_-]{43})$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_CREDENTIAL_CHARS = 8192
KEYRING_RECHECK_SECONDS = 2.0
BROWSER_ALGORITHM = "HS256"
# Refusal reasons, also the label values of voicefleet_auth_refusals_total.
Reason = Literal["missing", "malformed", "unknown_key", "expired", "invalid", "scope", "tenant"]


class Principal(Model):
    """The caller behind a credential."""

    tenant: str
    subject: str
    scopes: frozenset[str]
    kind: Literal["api_key", "jwt", "browser_key", "anonymous"]


ANONYMOUS = Principal(
    tenant=ANONYMOUS_TENANT, subject="anonymous", scopes=frozenset(SCOPES), kind="anonymous"
)


class KeyEntry(Model):
    id: str = Field(pattern=r"^[a-z0-9]{8,32}$")
    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    scopes: list[Scope] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    expires_unix: int = Field(default=0, ge=0, description="0: never expires.")


class Keyring(Model):
    keys: list[KeyEntry] = Field(default_factory=list)

    def by_id(self) -> dict[str, KeyEntry]:
        return {entry.id: entry for entry in self.keys}


def new_api_key(tenant: str, scopes: list[Scope], expires_unix: int = 0) -> tuple[str, KeyEntry]:
    """A fresh key and the keyring entry that admits it (only the entry goes into the Secret)."""
    key_id = secrets.token_hex(6)
    key = f"vfk_{key_id}.{secrets.token_urlsafe(32)}"
    entry = KeyEntry(
        id=key_id,
        tenant=tenant,
        scopes=scopes,
        sha256=hashlib.sha256(key.encode()).hexdigest(),
        expires_unix=expires_unix,
    )
    return key, entry


def refuse(reason: Reason, message: str) -> AdmissionError:
    session_metrics.AUTH_REFUSALS.labels(reason).inc()
    code = "permission_denied" if reason in ("scope", "tenant") else "unauthenticated"
    return AdmissionError(code, message)


class KeyringFile:
    """The mounted keyring, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._keys: dict[str, KeyEntry] = {}
        self._load()

    def _load(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            keyring = Keyring.model_validate_json(self.path.read_bytes())
        except ValidationError as exc:
            if self._stamp is None:
                raise ValueError(f"API keyring {self.path} is invalid: {exc}") from exc
            log.error("API keyring changed but is invalid; keeping the previous keys: %s", exc)
            return
        self._keys, self._stamp = keyring.by_id(), stamp
        log.info("API keyring loaded", extra={"keys": len(self._keys)})

    def get(self, key_id: str) -> KeyEntry | None:
        now = time.monotonic()
        if now - self._checked > KEYRING_RECHECK_SECONDS:
            self._checked = now
            try:
                self._load()
            except OSError as exc:
                log.error("cannot re-read the API keyring: %s", exc)
        return self._keys.get(key_id)


class Authenticator:
    def __init__(
        self,
        spec: AuthSpec,
        *,
        issuer: str,
        browser_key: bytes,
        keyring: KeyringFile | None = None,
        jwt_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.issuer = issuer  # iss and aud of browser keys: "voicefleet:<namespace>/<agent>"
        self._browser_key = browser_key
        self._keyring = keyring
        self._jwt_keys = _verification_keys(jwt_key) if jwt_key else []
        jwks_url = spec.jwt.jwks_url if spec.jwt else None
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None

    @classmethod
    def from_files(
        cls, spec: AuthSpec, issuer: str, browser_key: bytes, credentials_dir: Path | None
    ) -> Authenticator:
        def path(name: str, key: str) -> Path:
            if credentials_dir is None:
                raise ValueError("auth secrets need VOICEFLEET_CREDENTIALS_DIR")
            return credentials_dir / name / key

        keyring = None
        if spec.api_keys_secret_ref:
            ref = spec.api_keys_secret_ref
            keyring = KeyringFile(path(ref.name, ref.key))
        jwt_key = None
        if spec.jwt and spec.jwt.keys_secret_ref:
            ref = spec.jwt.keys_secret_ref
            jwt_key = path(ref.name, ref.key).read_text().strip()
        return cls(spec, issuer=issuer, browser_key=browser_key, keyring=keyring, jwt_key=jwt_key)

    async def authenticate(self, credential: str | None, scope: Scope) -> Principal:
        """The principal behind ``credential`` if it holds ``scope``; AdmissionError otherwise.
        Without a credential, callers are anonymous unless auth is required."""
        if not credential:
            if not self.spec.required:
                return ANONYMOUS
            raise refuse("missing", "a credential is required: send `Authorization: Bearer <API key or JWT>`")
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise refuse("malformed", "credential is malformed")
        if credential.startswith("vfk_"):
            principal = self._api_key(credential)
        elif credential.count(".") == 2:
            principal = await self._token(credential)
        else:
            raise refuse("malformed", "credential is neither an API key nor a JWT")
        if scope not in principal.scopes:
            raise refuse("scope", f"the credential lacks the scope {scope}")
        return principal

    def _api_key(self, credential: str) -> Principal:
        match = API_KEY_PATTERN.fullmatch(credential)
        if not match:
            raise refuse("malformed", "API key is malformed")
        entry = self._keyring.get(match.group(1)) if self._keyring else None
        digest = hashlib.sha256(credential.encode()).hexdigest()
        # Compare even for an unknown id, so timing does not tell known ids apart.
        expected = entry.sha256 if entry else "0" * 64
        if not hmac.compare_digest(digest, expected) or entry is None:
            raise refuse("unknown_key", "API key is not known")
        if entry.expires_unix and entry.expires_unix <= time.time():
            raise refuse("expired", "API key has expired")
        return Principal(
            tenant=entry.tenant, subject=entry.id, scopes=frozenset(entry.scopes), kind="api_key"
        )

    async def _token(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise refuse("malformed", f"JWT is malformed: {exc}") from None
        if header.get("kid") == "voicefleet-browser":
            claims = self._decode(token, [self._browser_key], [BROWSER_ALGORITHM], self.issuer, self.issuer)
            kind: Literal["jwt", "browser_key"] = "browser_key"
            tenant_claim = "tenant"
        else:
            if self.spec.jwt is None:
                raise refuse("invalid", "this fleet accepts no JWTs from identity providers")
            claims = await self._external(token)
            kind, tenant_claim = "jwt", self.spec.jwt.tenant_claim
        tenant = claims.get(tenant_claim)
        if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
            raise refuse("invalid", f"JWT's {tenant_claim} claim must be 1-128 chars of [A-Za-z0-9_.-]")
        return Principal(tenant=tenant, subject=str(claims.get("sub", "")), scopes=_scopes(claims), kind=kind)

    async def _external(self, token: str) -> dict[str, Any]:
        assert self.spec.jwt is not None
        spec = self.spec.jwt
        keys: list[Any] = list(self._jwt_keys)
        if self._jwks is not None:
            try:
                # PyJWKClient fetches with urllib: keep it off the event loop.
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                keys.insert(0, signing.key)
            except jwt.PyJWKClientError as exc:
                if not keys:
                    raise refuse("invalid", f"JWT signing key not found: {exc}") from None
        if not keys:
            raise refuse("invalid", "no key to verify JWTs")
        return self._decode(token, keys, list(spec.algorithms), spec.issuer, spec.audience)

    @staticmethod
    def _decode(
        token: str, keys: list[Any], algorithms: list[str], issuer: str | None, audience: str | None
    ) -> dict[str, Any]:
        """The claims of ``token`` signed with one of ``keys`` (tried in order); one refusal otherwise."""
        options: Any = {"require": ["exp"], "verify_aud": audience is not None}
        try:
            for key in keys[:-1]:
                with contextlib.suppress(jwt.InvalidSignatureError):
                    return _claims(token, key, algorithms, issuer, audience, options)
            return _claims(token, keys[-1], algorithms, issuer, audience, options)
        except jwt.ExpiredSignatureError:
            raise refuse("expired", "JWT has expired") from None
        except jwt.InvalidSignatureError:
            raise refuse("invalid", "JWT signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise refuse("invalid", f"JWT is not valid here: {exc}") from None

    def mint_browser_key(self, principal: Principal, ttl_seconds: float | None = None) -> tuple[str, int]:
        """A short-lived key for a web page: the caller's tenant, create/resume scopes only."""
        ttl = min(ttl_seconds or self.spec.browser_key_ttl_seconds, self.spec.browser_key_ttl_seconds)
        expires = int(time.time() + ttl)
        scopes = sorted(principal.scopes & {"sessions:create", "sessions:resume"})
        claims = {
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": principal.subject,
            "tenant": principal.tenant,
            "scope": " ".join(scopes),
            "exp": expires,
            "iat": int(time.time()),
        }
        token = jwt.encode(
            claims, self._browser_key, algorithm=BROWSER_ALGORITHM, headers={"kid": "voicefleet-browser"}
        )
        return token, expires


def _claims(
    token: str, key: Any, algorithms: list[str], issuer: str | None, audience: str | None, options: Any
) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=algorithms, issuer=issuer, audience=audience, options=options, leeway=5
    )
    return claims


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    names = raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
    return frozenset(name for name in names if name in SCOPES)


def _verification_keys(text: str) -> list[Any]:
    """PEM public keys (one or more, concatenated) or an HS256 shared secret."""
    if "-----BEGIN" not in text:
        return [text.encode()]
    blocks = re.findall(r"-----BEGIN [^-]+-----.+?-----END [^-]+-----", text, flags=re.S)
    return [block.encode() for block in blocks]
