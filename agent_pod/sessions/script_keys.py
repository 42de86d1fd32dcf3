"""The KEYS of each Lua script in ``scripts``: every key a script touches, in the order it reads them.

All of them are keys of one VoiceAgent (one hash tag), so a Redis Cluster runs each script on the one
node that holds them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .keys import AgentKeys


def _pods(keys: AgentKeys, names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out += [keys.pod(name), keys.load(name)]
    return out


def place_keys(keys: AgentKeys, session_id: str, expected_owner: str, order: Iterable[str]) -> list[str]:
    return [
        keys.pin(session_id),
        keys.pods,
        keys.load(expected_owner),
        keys.rollout,
        *_pods(keys, order),
    ]


def claim_keys(keys: AgentKeys, session_id: str, me: str, owner_guess: str) -> list[str]:
    return [
        keys.pin(session_id),
        keys.snapshot(session_id),
        keys.load(me),
        keys.pod(owner_guess),
        keys.load(owner_guess),
    ]


def release_keys(keys: AgentKeys, session_id: str, me: str, owner_guess: str) -> list[str]:
    return [keys.pin(session_id), keys.snapshot(session_id), keys.load(me), keys.load(owner_guess)]


def migrate_keys(keys: AgentKeys, session_id: str, candidates: Iterable[str]) -> list[str]:
    return [keys.pin(session_id), keys.snapshot(session_id), keys.pods, *_pods(keys, candidates)]


def abort_keys(keys: AgentKeys, session_id: str, me: str, target: str) -> list[str]:
    return [keys.pin(session_id), keys.pod(target), keys.load(target), keys.load(me)]


def heartbeat_keys(keys: AgentKeys, me: str, sessions: Iterable[str], others: Iterable[str]) -> list[str]:
    out = [keys.pod(me), keys.pods, keys.load(me)]
    for sid in sessions:
        out += [keys.pin(sid), keys.snapshot(sid)]
    return out + [keys.load(name) for name in others]
