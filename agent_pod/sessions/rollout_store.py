"""What the operator reads and writes in an agent's Redis for a canary rollout.

It writes the split (``Rollout``: the canary revision and its weight), which the PLACE script reads
on every new session, and reads the per-revision counters the pods add up
(``revision_stats``) to judge the canary.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .keys import AgentKeys
from .records import Rollout, decode_mapping
from .redis_client import AnyRedis
from .revision_stats import RevisionCounters


async def write_rollout(redis: AnyRedis, keys: AgentKeys, rollout: Rollout) -> None:
    """Send ``rollout.weight`` percent of new sessions to the canary's pods (0: none, yet its pods take no
    new session unless the stable side is full)."""
    await redis.hset(keys.rollout, mapping=dict[Any, Any](rollout.to_mapping()))


async def clear_rollout(redis: AnyRedis, keys: AgentKeys) -> None:
    """No canary: placement treats every pod alike again."""
    await redis.delete(keys.rollout)


async def read_rollout(redis: AnyRedis, keys: AgentKeys) -> Rollout | None:
    raw = await redis.hgetall(keys.rollout)
    if not raw:
        return None
    try:
        return Rollout.from_mapping(raw)
    except ValidationError as exc:
        raise ValueError(f"{keys.rollout}: {exc}") from exc


async def read_revision_counters(
    redis: AnyRedis, keys: AgentKeys, revisions: list[str]
) -> dict[str, RevisionCounters]:
    """The cumulative counters of each revision (all zero for a revision no pod has reported yet)."""
    pipe = redis.pipeline(transaction=False)
    for revision in revisions:
        pipe.hgetall(keys.revision_stats(revision))
    replies = await pipe.execute() if revisions else []
    out: dict[str, RevisionCounters] = {}
    for revision, raw in zip(revisions, replies, strict=True):
        key = keys.revision_stats(revision)
        try:
            out[revision] = RevisionCounters.from_hash(decode_mapping(raw))
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from exc
    return out
