"""Resume tokens: forged, foreign, expired, malformed or missing tokens are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_pod.sessions.tokens import ResumeTokens, TokenError, token_hash

KEY = b"k" * 32


def test_a_token_verifies_for_its_session_until_it_expires() -> None:
    tokens = ResumeTokens(KEY, 60)
    issued = tokens.issue("abc", now=1000)
    assert issued.expires_unix == 1060
    assert tokens.verify("abc", issued.token, now=1059) == 1060
    with pytest.raises(TokenError, match="expired"):
        tokens.verify("abc", issued.token, now=1060)


def test_a_token_is_bound_to_its_session_and_key() -> None:
    issued = ResumeTokens(KEY, 60).issue("abc")
    with pytest.raises(TokenError, match="does not match"):
        ResumeTokens(KEY, 60).verify("abd", issued.token)
    with pytest.raises(TokenError, match="does not match"):
        ResumeTokens(b"x" * 32, 60).verify("abc", issued.token)


def test_forged_tokens_are_refused() -> None:
    tokens = ResumeTokens(KEY, 60)
    good = tokens.issue("abc", now=1000).token
    version, expires, signature = good.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    later = str(int(expires) + 10_000)
    forgeries = [
        f"{version}.{expires}.{flipped}",  # tampered signature
        f"{version}.{later}.{signature}",  # extended expiry
        f"v2.{expires}.{signature}",
        f"{version}.{expires}",
        f"{version}.-5.{signature}",
        "x" * 300,
        "",
    ]
    for forged in forgeries:
        with pytest.raises(TokenError):
            tokens.verify("abc", forged, now=1000)
    with pytest.raises(TokenError, match="required"):
        tokens.verify("abc", None)


def test_only_a_hash_of_the_token_is_stored() -> None:
    token = ResumeTokens(KEY, 60).issue("abc").token
    assert token_hash(token) != token and len(token_hash(token)) == 64


def test_key_file_is_read_and_short_keys_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "key"
    good.write_bytes(KEY + b"\n")
    token = ResumeTokens.from_file(good, 60).issue("abc").token
    assert ResumeTokens(KEY, 60).verify("abc", token)
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ResumeTokens.from_file(short, 60)
    with pytest.raises(ValueError, match="cannot read"):
        ResumeTokens.from_file(tmp_path / "missing", 60)
