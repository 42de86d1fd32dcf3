"""pod-deletion-cost from live session counts, as pure functions.

The ReplicaSet controller removes pods with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first. The docs warn against
churning it from a live metric, so the operator writes it only right before it
lowers replicas and on a slow refresh, and only where the value changed.
"""

from __future__ import annotations

from collections.abc import Mapping

COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


def desired_costs(pod_sessions: Mapping[str, int], pods: list[str]) -> dict[str, int]:
    """Cost per pod = its live sessions (pods unknown to the registry count as idle)."""
    return {pod: int(pod_sessions.get(pod, 0)) for pod in pods}


def changed_costs(desired: Mapping[str, int], current: Mapping[str, str | None]) -> dict[str, int]:
    """Only the pods whose annotation differs from what they should carry. A pod without the
    annotation already costs 0, so new idle pods need no write (and cause no pod event)."""
    return {pod: cost for pod, cost in desired.items() if (current.get(pod) or "0") != str(cost)}
