"""Which keyword index the pgvector store keeps (pg_keyword.py)."""

from __future__ import annotations

from agent_pod.knowledge.pg_keyword import choose


def test_rum_only_when_wanted_and_available() -> None:
    assert choose("auto", rum_available=True) == "rum"
    assert choose("auto", rum_available=False) == "gin"
    assert choose("gin", rum_available=True) == "gin"
