from __future__ import annotations

from voicefleet_operator.autoscale import Recommendation, decide, recommend
from voicefleet_operator.spec import AutoscalingSpec

POLICY = AutoscalingSpec(
    enabled=True,
    min_replicas=1,
    max_replicas=10,
    sessions_per_pod=20,
    buffer_sessions=5,
    scale_down_stabilization_seconds=60,
)


def test_recommendation_is_ceil_of_sessions_plus_buffer_over_capacity() -> None:
    assert recommend(0, POLICY) == 1  # ceil(5/20)
    assert recommend(15, POLICY) == 1  # 20/20
    assert recommend(16, POLICY) == 2  # 21/20
    assert recommend(95, POLICY) == 5


def test_recommendation_is_clamped() -> None:
    assert recommend(10_000, POLICY) == 10
    zero_min = POLICY.model_copy(update={"min_replicas": 0, "buffer_sessions": 0})
    assert recommend(0, zero_min) == 0
    assert recommend(-3, zero_min) == 0


def test_scale_up_is_immediate() -> None:
    d = decide(current=2, live_sessions=100, policy=POLICY, history=(), now=1000.0)
    assert (d.replicas, d.reason) == (6, "scale up")


def test_scale_down_waits_for_the_window() -> None:
    history = (Recommendation(at=990.0, replicas=6),)
    d = decide(current=6, live_sessions=10, policy=POLICY, history=history, now=1000.0)
    assert d.recommendation == 1
    assert d.replicas == 6
    assert d.reason == "scale down held by stabilization window"
    # Once the high recommendation leaves the window, the fleet shrinks to the highest one left.
    later = decide(current=6, live_sessions=10, policy=POLICY, history=d.history, now=1051.0)
    assert later.replicas == 1
    assert later.reason == "scale down"


def test_history_keeps_only_the_window() -> None:
    history = tuple(Recommendation(at=t, replicas=3) for t in (100.0, 500.0, 990.0))
    d = decide(current=3, live_sessions=40, policy=POLICY, history=history, now=1000.0)
    assert [r.at for r in d.history] == [990.0, 1000.0]
