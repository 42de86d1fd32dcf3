"""Placement as a pure function: the load bound, stickiness of the ring, only eligible pods."""

from __future__ import annotations

import math
import random
import uuid

from agent_pod.sessions.placement import PodLoad, choose, load_bound, place, ring_order


def random_pods(rng: random.Random) -> list[PodLoad]:
    return [
        PodLoad(
            name=f"pod-{i}",
            load=rng.randint(0, 40),
            capacity=rng.randint(1, 60),
            eligible=rng.random() > 0.2,
        )
        for i in range(rng.randint(1, 12))
    ]


def test_choice_respects_bound_capacity_and_eligibility_for_many_random_loads() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        pods = random_pods(rng)
        eps = rng.choice([0.0, 0.1, 0.25, 1.0])
        chosen = place(uuid.UUID(int=rng.getrandbits(128)).hex, pods, eps)
        eligible = [p for p in pods if p.eligible]
        if not eligible:
            assert chosen is None
            continue
        bound = load_bound(sum(p.load for p in eligible), len(eligible), eps)
        if chosen is None:
            # refused only when every eligible pod is full or above the bound
            assert all(p.load >= p.capacity or p.load >= bound for p in eligible)
            continue
        pod = next(p for p in pods if p.name == chosen)
        assert pod.eligible
        assert pod.load < pod.capacity
        assert pod.load + 1 <= bound


def test_the_bound_always_leaves_a_pod_when_capacity_is_not_the_limit() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        pods = [PodLoad(f"p{i}", rng.randint(0, 100), 10_000) for i in range(rng.randint(1, 10))]
        assert place(uuid.uuid4().hex, pods, rng.choice([0.0, 0.25])) is not None


def test_sequential_placement_never_exceeds_one_and_a_quarter_times_the_average() -> None:
    loads = {f"pod-{i}": 0 for i in range(7)}
    rng = random.Random(3)
    live: list[tuple[str, str]] = []
    for step in range(6000):
        if live and rng.random() < 0.4:  # uneven session lengths: random departures
            _, pod = live.pop(rng.randrange(len(live)))
            loads[pod] -= 1
            continue
        sid = f"s{step}"
        chosen = place(sid, [PodLoad(n, load, 10_000) for n, load in loads.items()], 0.25)
        assert chosen is not None
        total = sum(loads.values()) + 1
        assert loads[chosen] + 1 <= max(1.25 * total / len(loads), math.ceil(total / len(loads)))
        loads[chosen] += 1
        live.append((sid, chosen))


def test_ring_order_lists_every_pod_once_and_is_deterministic() -> None:
    pods = [f"pod-{i}" for i in range(9)]
    for i in range(200):
        order = ring_order(f"session-{i}", pods)
        assert sorted(order) == sorted(pods)
        assert order == ring_order(f"session-{i}", list(reversed(pods)))


def test_adding_a_pod_only_inserts_it_into_each_sessions_order() -> None:
    """Consistent hashing: a new pod changes nothing else about any session's preference."""
    pods = [f"pod-{i}" for i in range(6)]
    moved = 0
    for i in range(3000):
        before = ring_order(f"s{i}", pods)
        after = ring_order(f"s{i}", [*pods, "pod-new"])
        assert [p for p in after if p != "pod-new"] == before
        moved += after[0] != before[0]
    # about 1/7 of first choices go to the new pod; nothing else moves
    assert 0.08 < moved / 3000 < 0.22


def test_first_choice_spreads_sessions_evenly() -> None:
    pods = [f"pod-{i}" for i in range(5)]
    counts = dict.fromkeys(pods, 0)
    for i in range(10_000):
        counts[ring_order(uuid.UUID(int=i * 7919 + 1).hex, pods)[0]] += 1
    assert max(counts.values()) < 1.6 * min(counts.values())


def test_only_eligible_pods_are_chosen() -> None:
    pods = [PodLoad("ready", 30, 100), PodLoad("draining", 0, 100, eligible=False)]
    for i in range(100):
        assert place(f"s{i}", pods, 0.25) == "ready"
    assert choose([PodLoad("a", 0, 10, eligible=False)], 0.25) is None


def test_full_pods_are_skipped_and_an_all_full_fleet_refuses() -> None:
    assert choose([PodLoad("a", 5, 5), PodLoad("b", 0, 5)], 0.25) == "b"
    assert choose([PodLoad("a", 5, 5), PodLoad("b", 5, 5)], 10.0) is None


def test_load_bound_counts_the_new_session() -> None:
    assert load_bound(0, 4, 0.25) == 1  # integers: at least the ceiling of the average
    assert load_bound(39, 4, 0.25) == 12  # floor(1.25 * 40 / 4) = floor(12.5)
    assert load_bound(39, 4, 0.0) == 10
    assert load_bound(41, 4, 0.0) == 11  # ceil(42 / 4)
