"""The operator reports a flow's unreachable nodes on a real control plane: FlowValid and an Event."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.kube import Cluster, OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

FLOW: dict[str, Any] = {
    "initialNode": "desk",
    "nodes": [
        {"name": "desk", "transitions": [{"function": "go_to_billing", "to": "billing"}]},
        {"name": "billing"},
        {"name": "booking", "transitions": [{"function": "back", "to": "desk"}]},
    ],
}


def flow_condition(cluster: Cluster, ns: str, status: str) -> dict[str, Any] | None:
    va = cluster.get("voiceagent", "flowing", ns)
    conds = va.get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == "FlowValid" and c["status"] == status), None)


def test_unreachable_nodes_are_reported(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    body = {"apiVersion": "voicefleet.io/v1alpha1", "kind": "VoiceAgent", "metadata": {"name": "flowing"}}
    kwok_cluster.apply(json.dumps({**body, "spec": {"flow": FLOW}}), ns)
    cond = wait_for(lambda: flow_condition(kwok_cluster, ns, "False"), timeout=60, what="FlowValid=False")
    assert cond["reason"] == "UnreachableNodes"
    assert cond["message"] == "no transition leads from initialNode desk to: booking"

    def warning() -> dict[str, Any] | None:
        events = kwok_cluster.get("events", namespace=ns)["items"]
        return next((e for e in events if e["reason"] == "FlowValidFalse"), None)

    event = wait_for(warning, timeout=30, what="the FlowValidFalse event")
    assert event["type"] == "Warning" and "booking" in event["message"]

    # A way into booking: the flow is whole again.
    whole = copy.deepcopy(FLOW)
    whole["nodes"][1]["transitions"] = [{"function": "go_to_booking", "to": "booking"}]
    kwok_cluster.apply(json.dumps({**body, "spec": {"flow": whole}}), ns)
    cond = wait_for(lambda: flow_condition(kwok_cluster, ns, "True"), timeout=60, what="FlowValid=True")
    assert cond["reason"] == "AllNodesReachable"
