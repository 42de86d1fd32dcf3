from __future__ import annotations

from voicefleet_operator.deletion_cost import changed_costs, desired_costs


def test_costs_follow_sessions_and_unknown_pods_are_idle() -> None:
    assert desired_costs({"a": 5, "b": 0}, ["a", "b", "c"]) == {"a": 5, "b": 0, "c": 0}


def test_only_changed_annotations_are_written() -> None:
    desired = {"a": 5, "b": 0, "c": 2, "d": 0, "e": 1}
    current = {"a": "5", "b": "4", "c": "3", "d": None, "e": None}
    assert changed_costs(desired, current) == {"b": 0, "c": 2, "e": 1}


def test_a_missing_annotation_already_means_cost_zero() -> None:
    assert changed_costs({"new": 0}, {"new": None}) == {}
