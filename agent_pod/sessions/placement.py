"""Where a new session goes: consistent hashing with bounded loads.

Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads"
(as used by Vimeo and HAProxy): hash the session id onto a ring of pod points,
walk clockwise, and take the first pod that is eligible (ready, not draining,
fresh heartbeat), below its capacity and below the load bound. With
``avg = (total load + 1) / eligible pods`` (the average counts the new session)
the bound is ``max(floor((1 + eps) * avg), ceil(avg))``: a pod never takes a
session that puts it above (1 + eps) times the average, except where integers
make that impossible, and then it stays at the ceiling of the average (tighter
than the paper's ``ceil((1 + eps) * avg)``; some pod always fits). The ring keeps
choices stable as pods come and go.

During a canary rollout (``records.Rollout``) a new session first picks a side of
the split: the canary revision's pods when its bucket (a stable hash of the
session id into 0..99) is below the weight, else the pods of every other revision
(the stable side; during a rolling update of the stable Deployment its old and new
pods are both stable). A session re-placed while its pin still names a revision
stays on that revision's side. The bounded-load rule then runs among that side's
pods alone; a side with no pod that fits hands the session to the other side
(a call is never refused for lack of canary capacity).

These functions are pure; the Lua script in ``scripts.py`` runs the same
rules inside Redis on the ring order and bucket computed here, so concurrent
creates on different pods cannot overshoot the bound.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .records import Rollout

VIRTUAL_NODES = 64  # points per pod on the ring: spreads ring arcs evenly
BUCKETS = 100  # a rollout's weight is a percentage: one bucket per percent

Side = Literal["canary", "stable"]


@dataclass(frozen=True)
class PodLoad:
    name: str
    load: int
    capacity: int
    eligible: bool = True  # ready, not draining, heartbeat fresh
    revision: str = ""


@dataclass(frozen=True)
class Choice:
    """Where a session goes: the pod (None: nowhere), the side of a canary split (None: no rollout),
    and whether the side it belongs to had no room (it went to the other side)."""

    pod: str | None
    side: Side | None = None
    fallback: bool = False


def ring_hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=64)
def _ring(names: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    points = sorted((ring_hash(f"{name}#{i}"), name) for name in names for i in range(VIRTUAL_NODES))
    return tuple(p for p, _ in points), tuple(n for _, n in points)


def ring_order(session_id: str, pod_names: Iterable[str]) -> list[str]:
    """Every pod once, in the order met walking clockwise from the session's point."""
    names = tuple(sorted(set(pod_names)))
    if not names:
        return []
    points, owners = _ring(names)
    start = bisect.bisect_left(points, ring_hash(session_id))
    order: list[str] = []
    seen: set[str] = set()
    for i in range(len(owners)):
        owner = owners[(start + i) % len(owners)]
        if owner not in seen:
            seen.add(owner)
            order.append(owner)
            if len(order) == len(names):
                break
    return order


def load_bound(total_load: int, eligible_pods: int, epsilon: float) -> int:
    """Most sessions a pod may hold after taking the new one (the Lua script computes it identically)."""
    return max(
        math.floor((1.0 + epsilon) * (total_load + 1) / eligible_pods),
        math.ceil((total_load + 1) / eligible_pods),
    )


def choose(order: Sequence[PodLoad], epsilon: float) -> str | None:
    """The first pod of ``order`` that is eligible, below capacity and below the bound; None if none."""
    eligible = [p for p in order if p.eligible]
    if not eligible:
        return None
    bound = load_bound(sum(p.load for p in eligible), len(eligible), epsilon)
    for pod in eligible:
        if pod.load < pod.capacity and pod.load < bound:
            return pod.name
    return None


def place(session_id: str, pods: Iterable[PodLoad], epsilon: float) -> str | None:
    by_name = {p.name: p for p in pods}
    return choose([by_name[n] for n in ring_order(session_id, by_name)], epsilon)


def revision_bucket(session_id: str) -> int:
    """The session's bucket of a canary split, 0..99. Its own hash (not the ring's), so which side a
    session takes is independent of where it lands on the ring."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8, person=b"vf-canary").digest()
    return int.from_bytes(digest, "big") % BUCKETS


def session_side(rollout: Rollout, bucket: int, pinned_revision: str | None = None) -> Side:
    """The side a session belongs to: a re-placed one stays with its pinned revision's side, a new one
    takes the canary when its bucket is below the weight."""
    if pinned_revision is not None:
        return "canary" if pinned_revision == rollout.canary else "stable"
    return "canary" if bucket < rollout.weight else "stable"


def split_by_revision(order: Sequence[PodLoad], canary: str) -> tuple[list[PodLoad], list[PodLoad]]:
    """(canary pods, stable pods), each in ring order: every revision but the canary is stable."""
    return [p for p in order if p.revision == canary], [p for p in order if p.revision != canary]


def choose_revision(
    order: Sequence[PodLoad],
    epsilon: float,
    rollout: Rollout | None,
    bucket: int,
    pinned_revision: str | None = None,
) -> Choice:
    """``choose`` with a canary split: the session's side first, the bound among that side's pods only,
    then the other side when the first has no pod that fits. Without a rollout, plain ``choose``."""
    if rollout is None:
        return Choice(choose(order, epsilon))
    canary, stable = split_by_revision(order, rollout.canary)
    first = session_side(rollout, bucket, pinned_revision)
    sides: list[tuple[Side, list[PodLoad]]] = [("canary", canary), ("stable", stable)]
    if first == "stable":
        sides.reverse()
    for i, (side, pods) in enumerate(sides):
        pod = choose(pods, epsilon)
        if pod is not None:
            return Choice(pod, side, fallback=i > 0)
    return Choice(None, first)


def is_fresh(heartbeat_ms: int, now_ms: int, stale_ms: int) -> bool:
    return now_ms - heartbeat_ms <= stale_ms
