"""The signing key of audit logs, and the signed head.

Ed25519 rather than HMAC: verifying needs only the public key, so an auditor (or a customer) can check
a log without being able to forge one; with HMAC whoever verifies could also sign. Signing costs tens
of microseconds, cheap enough for every append.

The key file holds a PEM (PKCS#8) Ed25519 private key, or its 32-byte seed (what the operator
generates). A verifier accepts either, or a PEM public key. A key's id is the first 16 hex digits of
the SHA-256 of its raw public key; the head names it, so rotated keys can sit side by side.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict

from .audit_entries import canonical

HEAD_CONTEXT = b"voicefleet-audit-head-v1\n"
RAW_TEXT_INFO = b"voicefleet audit raw text v1"


class AuditKeyError(ValueError):
    pass


class Head(BaseModel):
    """The signed head of a log: its last entry's seq and hash."""

    model_config = ConfigDict(extra="forbid")

    log: str
    seq: int
    hash: str
    key_id: str
    signed_at: float
    signature: str = ""

    def message(self) -> bytes:
        return HEAD_CONTEXT + canonical(self.model_dump(exclude={"signature"}))


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private(data: bytes) -> Ed25519PrivateKey:
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyError("the audit signing key is not an Ed25519 key")
        return key
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    raise AuditKeyError("the audit signing key must be a PEM Ed25519 private key or a 32-byte seed")


def load_public(data: bytes) -> Ed25519PublicKey:
    """A verification key from a PEM public key, a PEM private key or a 32-byte seed."""
    if b"PUBLIC KEY" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError("the audit verification key is not an Ed25519 key")
        return key
    return load_private(data).public_key()


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.key_id = key_id(private.public_key())
        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self._raw = AESGCM(raw_text_key(seed))

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        return cls(load_private(path.read_bytes()))

    def sign(self, head: Head) -> Head:
        signature = self._private.sign(head.message())
        return head.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._raw.encrypt(nonce, plaintext, aad)).decode()

    def open(self, sealed: str, aad: bytes) -> bytes:
        data = base64.b64decode(sealed)
        try:
            return self._raw.decrypt(data[:12], data[12:], aad)
        except InvalidTag as exc:
            raise AuditKeyError("the raw text does not open with this key") from exc


def raw_text_key(seed: bytes) -> bytes:
    """The AES-256 key of raw text, derived from the signing key: one Secret holds both."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=RAW_TEXT_INFO).derive(seed)


def signature_ok(head: Head, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None when ``head`` is signed by one of ``keys`` (by id), else why not."""
    if not head.signature:
        return "the head is not signed"
    public = keys.get(head.key_id)
    if public is None:
        return f"the head is signed with key {head.key_id}, which was not given"
    try:
        public.verify(base64.b64decode(head.signature), head.message())
    except (InvalidSignature, ValueError):
        return f"the head's signature does not verify with key {head.key_id}"
    return None
