"""The buffer autoscaler (like Agones' FleetAutoscaler buffer policy), as pure functions.

desired = ceil((live sessions + bufferSessions) / sessionsPerPod), clamped to
[minReplicas, maxReplicas]. Scale-up is immediate; scale-down only goes to the
highest recommendation seen within the stabilization window (as the HPA does),
so a brief dip in load never removes pods that will be needed again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .spec import AutoscalingSpec


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    replicas: int
    recommendation: int
    reason: str
    history: tuple[Recommendation, ...]


def recommend(live_sessions: int, policy: AutoscalingSpec) -> int:
    raw = math.ceil((max(live_sessions, 0) + policy.buffer_sessions) / policy.sessions_per_pod)
    return min(max(raw, policy.min_replicas), policy.max_replicas)


def decide(
    current: int,
    live_sessions: int,
    policy: AutoscalingSpec,
    history: tuple[Recommendation, ...],
    now: float,
) -> Decision:
    rec = recommend(live_sessions, policy)
    window_start = now - policy.scale_down_stabilization_seconds
    kept = (*(r for r in history if r.at >= window_start), Recommendation(now, rec))
    if rec >= current:
        replicas, reason = rec, ("scale up" if rec > current else "steady")
    else:
        replicas = min(current, max(r.replicas for r in kept))
        reason = "scale down" if replicas < current else "scale down held by stabilization window"
    return Decision(replicas=replicas, recommendation=rec, reason=reason, history=kept)
