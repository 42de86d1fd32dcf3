"""The audio-rate budget (pure): real time plus a burst is taken, faster audio is refused, a flood is cut."""

from __future__ import annotations

from agent_pod.transports.audio_budget import AudioBudget, Verdict

FRAME = 0.02


def test_a_real_time_caller_is_always_within_budget():
    budget = AudioBudget(burst_seconds=2.0, now=0.0)
    verdicts = {budget.take(FRAME, now=i * FRAME) for i in range(1, 180_000)}  # an hour of 20 ms frames
    assert verdicts == {Verdict.TAKE}


def test_a_burst_ahead_of_real_time_is_taken_then_audio_is_refused_once_reported():
    budget = AudioBudget(burst_seconds=2.0, now=0.0)
    verdicts = [budget.take(FRAME, now=0.0) for _ in range(150)]  # 3 s at once
    assert verdicts[:100] == [Verdict.TAKE] * 100
    assert verdicts[100] is Verdict.REFUSE_FIRST
    assert set(verdicts[101:]) == {Verdict.REFUSE}
    # real time passes: the caller is served again, and a later excess is reported anew
    assert budget.take(FRAME, now=1.5) is Verdict.TAKE
    assert budget.take(2.5, now=1.5) is Verdict.REFUSE_FIRST


def test_a_caller_somewhat_faster_than_real_time_is_told_once_then_cut_off():
    budget = AudioBudget(burst_seconds=2.0, now=0.0, flood_seconds=10.0)
    verdicts = [budget.take(FRAME, now=i * FRAME / 1.5) for i in range(1, 3000)]  # 1.5x real time
    assert verdicts.count(Verdict.REFUSE_FIRST) == 1
    assert Verdict.TAKE in verdicts[verdicts.index(Verdict.REFUSE_FIRST) :]  # it still gets real time
    first_flood = verdicts.index(Verdict.FLOOD)
    # 12 s ahead of real time after 36 s of audio sent in 24 s
    assert 1780 <= first_flood <= 1810


def test_a_caller_that_paused_may_catch_up_by_the_burst_only():
    budget = AudioBudget(burst_seconds=2.0, now=0.0)
    # ten silent seconds do not bank ten seconds of credit
    taken = sum(budget.take(FRAME, now=10.0) is Verdict.TAKE for _ in range(500))
    assert taken == 100


def test_a_flood_is_cut_off_after_the_flood_allowance():
    budget = AudioBudget(burst_seconds=1.0, now=0.0, flood_seconds=5.0)
    verdicts = [budget.take(FRAME, now=0.0) for _ in range(400)]
    assert verdicts.count(Verdict.TAKE) == 50
    first_flood = verdicts.index(Verdict.FLOOD)
    assert 298 <= first_flood <= 300  # 6 s sent at once: burst plus flood allowance
    assert all(v is Verdict.FLOOD for v in verdicts[first_flood:])
