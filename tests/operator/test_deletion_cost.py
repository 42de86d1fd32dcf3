from __future__ import annotations

from agent_pod.sessions.fleet_state import FleetState, fleet_state
from agent_pod.sessions.records import PodRecord
from voicefleet_operator.deletion_cost import changed_costs, cost_writes, desired_costs, scale_down_order


def fleet(*pods: tuple[str, int, int]) -> FleetState:
    """Registered pods as (name, live sessions, placed load)."""
    records = [(PodRecord(name=n, capacity=20, live=live, heartbeat_ms=1000), load) for n, live, load in pods]
    return fleet_state("ns", "desk", records, 1000, 6000)


def test_cost_is_the_higher_of_live_and_placed_sessions_and_unknown_pods_are_idle() -> None:
    f = fleet(("a", 5, 3), ("b", 0, 2), ("gone", 9, 9))
    assert desired_costs(f, ["a", "b", "c"]) == {"a": 5, "b": 2, "c": 0}


def test_only_changed_annotations_are_written() -> None:
    desired = {"a": 5, "b": 0, "c": 2, "d": 0, "e": 1}
    current = {"a": "5", "b": "4", "c": "3", "d": None, "e": None}
    assert changed_costs(desired, current) == {"b": 0, "c": 2, "e": 1}


def test_a_missing_annotation_already_means_cost_zero() -> None:
    assert changed_costs({"new": 0}, {"new": None}) == {}


def test_writes_cover_only_the_given_pods() -> None:
    f = fleet(("a", 5, 5), ("b", 0, 0), ("draining", 4, 4))
    assert cost_writes(f, {"a": "1", "b": None}) == {"a": 5}


def test_scale_down_order_is_idle_first_then_least_loaded() -> None:
    f = fleet(("busy", 9, 9), ("idle-2", 0, 0), ("placed", 0, 3), ("idle-1", 0, 0))
    assert scale_down_order(f) == ["idle-1", "idle-2", "placed", "busy"]
