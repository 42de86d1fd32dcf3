"""Placement as a pure function: the load bound, stickiness of the ring, only eligible pods, and the
canary split by revision."""

from __future__ import annotations

import math
import random
import uuid

from agent_pod.sessions.placement import (
    PodLoad,
    choose,
    choose_revision,
    load_bound,
    place,
    revision_bucket,
    ring_order,
    session_side,
    split_by_revision,
)
from agent_pod.sessions.records import Rollout


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


# ----- canary split ------------------------------------------------------------------------------


def test_the_bucket_is_stable_and_spreads_sessions_evenly_over_the_hundred_buckets() -> None:
    ids = [uuid.UUID(int=i * 104729 + 7).hex for i in range(20_000)]
    buckets = [revision_bucket(sid) for sid in ids]
    assert buckets == [revision_bucket(sid) for sid in ids]
    assert min(buckets) == 0 and max(buckets) == 99
    per_decile = [sum(1 for b in buckets if b // 10 == d) for d in range(10)]
    assert all(1700 < n < 2300 for n in per_decile), per_decile  # 2,000 expected in each


def test_the_bucket_does_not_follow_the_ring() -> None:
    """Which side a session takes must not depend on which pod its ring walk meets first."""
    pods = [f"pod-{i}" for i in range(4)]
    canary_share = {p: [0, 0] for p in pods}
    for i in range(8000):
        sid = f"s-{i}"
        first = ring_order(sid, pods)[0]
        canary_share[first][0] += revision_bucket(sid) < 30
        canary_share[first][1] += 1
    assert all(0.25 < hits / n < 0.35 for hits, n in canary_share.values()), canary_share


def test_a_new_session_takes_its_side_by_bucket_and_a_replaced_one_keeps_its_revisions_side() -> None:
    rollout = Rollout(canary="rev-new", weight=20)
    assert session_side(rollout, 19) == "canary"
    assert session_side(rollout, 20) == "stable"
    assert session_side(Rollout(canary="rev-new", weight=0), 0) == "stable"
    assert session_side(Rollout(canary="rev-new", weight=100), 99) == "canary"
    assert session_side(rollout, 0, pinned_revision="rev-old") == "stable"
    assert session_side(rollout, 99, pinned_revision="rev-new") == "canary"
    assert session_side(rollout, 0, pinned_revision="") == "stable"  # a pin of unknown revision


def test_every_revision_but_the_canary_is_stable_and_ring_order_is_kept() -> None:
    order = [
        PodLoad("a", 0, 5, revision="old"),
        PodLoad("b", 0, 5, revision="canary"),
        PodLoad("c", 0, 5, revision="new-stable"),
        PodLoad("d", 0, 5, revision="canary"),
    ]
    canary, stable = split_by_revision(order, "canary")
    assert [p.name for p in canary] == ["b", "d"]
    assert [p.name for p in stable] == ["a", "c"]


def test_without_a_rollout_revisions_change_nothing() -> None:
    rng = random.Random(17)
    for _ in range(2000):
        pods = [
            PodLoad(f"p{i}", rng.randint(0, 20), rng.randint(1, 30), rng.random() > 0.2, rng.choice("ab"))
            for i in range(rng.randint(1, 8))
        ]
        choice = choose_revision(pods, 0.25, None, rng.randrange(100))
        assert choice.pod == choose(pods, 0.25)
        assert choice.side is None and not choice.fallback


def test_the_split_holds_the_bound_within_each_side_and_falls_back_only_when_a_side_is_full() -> None:
    rng = random.Random(23)
    fallbacks = 0
    for _ in range(5000):
        pods = [
            PodLoad(
                f"p{i}",
                rng.randint(0, 20),
                rng.randint(1, 25),
                eligible=rng.random() > 0.15,
                revision=rng.choice(["stable-1", "stable-2", "canary"]),
            )
            for i in range(rng.randint(1, 9))
        ]
        rollout = Rollout(canary="canary", weight=rng.choice([0, 1, 20, 50, 99, 100]))
        bucket = rng.randrange(100)
        pinned = rng.choice([None, None, "canary", "stable-1"])
        choice = choose_revision(pods, 0.25, rollout, bucket, pinned)
        own = session_side(rollout, bucket, pinned)
        canary, stable = split_by_revision(pods, "canary")
        own_pods, other_pods = (canary, stable) if own == "canary" else (stable, canary)
        if choice.pod is None:
            assert choose(own_pods, 0.25) is None and choose(other_pods, 0.25) is None
            continue
        chosen = next(p for p in pods if p.name == choice.pod)
        side_pods = other_pods if choice.fallback else own_pods
        assert chosen in side_pods and (chosen.revision == "canary") == (choice.side == "canary")
        assert choice.fallback == (choose(own_pods, 0.25) is None)
        fallbacks += choice.fallback
        eligible = [p for p in side_pods if p.eligible]
        assert chosen.eligible and chosen.load < chosen.capacity
        assert chosen.load + 1 <= load_bound(sum(p.load for p in eligible), len(eligible), 0.25)
    assert fallbacks > 100  # the random fleets do exercise full sides


def test_a_full_canary_hands_its_sessions_to_the_stable_side_and_the_other_way_round() -> None:
    canary_full = [PodLoad("c", 3, 3, revision="new"), PodLoad("s", 0, 10, revision="old")]
    everyone = Rollout(canary="new", weight=100)
    assert choose_revision(canary_full, 0.25, everyone, 50).pod == "s"
    assert choose_revision(canary_full, 0.25, everyone, 50).fallback
    stable_full = [PodLoad("c", 0, 10, revision="new"), PodLoad("s", 3, 3, revision="old")]
    nobody = Rollout(canary="new", weight=0)
    choice = choose_revision(stable_full, 0.25, nobody, 50)
    assert (choice.pod, choice.side, choice.fallback) == ("c", "canary", True)
    assert choose_revision([PodLoad("c", 3, 3, revision="new")], 0.25, nobody, 5).pod is None
