"""The pod-deletion-cost rule, the one place it lives (pure functions).

The ReplicaSet controller removes pods with the lowest
``controller.kubernetes.io/pod-deletion-cost`` first. A pod's cost is the number
of sessions placed on it (live, reserved or resumable, whichever count is
higher), so idle pods go first and busy ones last. The docs warn against
churning the annotation from a live metric, so the operator writes it only right
before it lowers replicas and on a slow refresh, and only where the value changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent_pod.sessions.fleet_state import FleetPod, FleetState

COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


def pod_cost(pod: FleetPod) -> int:
    return max(pod.live_sessions, pod.load)


def desired_costs(fleet: FleetState, pods: Iterable[str]) -> dict[str, int]:
    """Cost per pod; pods unknown to the registry (not registered yet, or expired) count as idle."""
    known = {p.name: pod_cost(p) for p in fleet.pods}
    return {pod: known.get(pod, 0) for pod in pods}


def changed_costs(desired: Mapping[str, int], current: Mapping[str, str | None]) -> dict[str, int]:
    """Only the pods whose annotation differs from what they should carry. A pod without the
    annotation already costs 0, so new idle pods need no write (and cause no pod event)."""
    return {pod: cost for pod, cost in desired.items() if (current.get(pod) or "0") != str(cost)}


def cost_writes(fleet: FleetState, current: Mapping[str, str | None]) -> dict[str, int]:
    """The annotations to write on the given pods (name -> current annotation or None)."""
    return changed_costs(desired_costs(fleet, current), current)


def scale_down_order(fleet: FleetState) -> list[str]:
    """Registered pods in the order a scale-down removes them: lowest cost first, then by name."""
    return [p.name for p in sorted(fleet.pods, key=lambda p: (pod_cost(p), p.name))]
