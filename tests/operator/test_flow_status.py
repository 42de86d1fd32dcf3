"""FlowValid: the operator reports flow nodes no transition reaches (a condition and a Warning Event)."""

from __future__ import annotations

import dataclasses

from tests.flows.flowspec import receptionist_flow
from tests.operator.test_plan import TIMING, base
from voicefleet_operator.flow_check import flow_condition
from voicefleet_operator.plan import plan_check
from voicefleet_operator.spec import VoiceAgentSpec

TOOLS = [
    {"name": "book_table", "description": "Book.", "endpoint": {"url": "http://tools/book"}},
    {"name": "refund", "description": "Refund.", "endpoint": {"url": "http://tools/refund"}},
]


def spec(**overrides: object) -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate(
        {"replicas": 2, "tools": TOOLS, "flow": receptionist_flow(**overrides)}
    )


def test_flow_condition_is_pure() -> None:
    assert flow_condition(None) is None
    assert flow_condition(spec().flow) == (True, "AllNodesReachable", "3 nodes reachable from reception")
    cut = spec(reception={"transitions": [{"function": "go_to_billing", "to": "billing"}]})
    assert flow_condition(cut.flow) == (
        False,
        "UnreachableNodes",
        "no transition leads from initialNode reception to: booking",
    )


def test_unreachable_nodes_show_in_status_with_a_warning_event_once() -> None:
    healthy = base(spec=spec())
    plan = plan_check(healthy, TIMING)
    flow_valid = next(c for c in plan.observed.conditions if c.type == "FlowValid")
    assert (flow_valid.status, flow_valid.reason) == ("True", "AllNodesReachable")
    assert not [e for e in plan.events if e.reason.startswith("FlowValid")]  # a first healthy flow is no news

    cut = spec(reception={"transitions": []})
    plan = plan_check(dataclasses.replace(healthy, spec=cut, previous=plan.observed), TIMING)
    assert plan.status_patch is not None
    flow_valid = next(c for c in plan.status_patch.conditions if c.type == "FlowValid")
    assert (flow_valid.status, flow_valid.reason) == ("False", "UnreachableNodes")
    assert flow_valid.message == "no transition leads from initialNode reception to: booking, billing"
    [event] = [e for e in plan.events if e.reason.startswith("FlowValid")]
    assert event.warning and event.reason == "FlowValidFalse" and "booking, billing" in event.message

    # Said once: the next check with the same spec patches nothing and warns no more.
    again = plan_check(
        dataclasses.replace(healthy, spec=cut, previous=plan.observed, now=healthy.now + 60), TIMING
    )
    assert not [e for e in again.events if e.reason.startswith("FlowValid")]


def test_agent_without_flow_has_no_flow_condition() -> None:
    plan = plan_check(base(), TIMING)
    assert "FlowValid" not in {c.type for c in plan.observed.conditions}
