"""The FlowValid condition of a VoiceAgent with a flow (pure): every node must be reachable.

The API server already refuses a flow that names unknown nodes or tools (CEL); a node no transition
leads to is legal but dead configuration, so the operator reports it instead of refusing it.
"""

from __future__ import annotations

from agent_pod.config import FlowSpec
from agent_pod.flows.graph import unreachable_nodes

FLOW_CONDITION = "FlowValid"


def flow_condition(flow: FlowSpec | None) -> tuple[bool, str, str] | None:
    """(status, reason, message) of FlowValid; None for an agent without a flow (no condition)."""
    if flow is None:
        return None
    dead = unreachable_nodes(flow)
    if dead:
        return (
            False,
            "UnreachableNodes",
            f"no transition leads from initialNode {flow.initial_node} to: {', '.join(dead)}",
        )
    return True, "AllNodesReachable", f"{len(flow.nodes)} nodes reachable from {flow.initial_node}"
