"""DTMF collection: the pure collector, and keypad input through a real in-process session."""

from __future__ import annotations

import pytest

from agent_pod.config import AgentConfig, DtmfSpec
from agent_pod.pipeline.dtmf import DtmfCollector
from agent_pod.pipeline.input_limits import InputRefused
from tests.pipeline.harness import Harness, make_config


def test_digits_collect_until_the_terminator_which_is_not_part_of_them() -> None:
    c = DtmfCollector(DtmfSpec())
    assert [c.press(d, 0.1 * i) for i, d in enumerate("123")] == [None, None, None]
    assert c.collecting and c.deadline == pytest.approx(0.2 + 2.0)
    assert c.press("#", 0.5) == "123"
    assert not c.collecting and c.deadline is None
    assert c.press("#", 1.0) == "#"  # the terminator alone is an input of its own


def test_the_inter_digit_timeout_and_max_digits_complete_an_input() -> None:
    c = DtmfCollector(DtmfSpec(inter_digit_timeout_seconds=1.0, max_digits=4))
    c.press("4", 0.0)
    c.press("2", 0.5)
    assert c.expire(1.49) is None  # timed from the last digit
    assert c.expire(1.5) == "42"
    assert c.expire(9.0) is None
    assert [c.press(d, 3.0) for d in "9876"] == [None, None, None, "9876"]


def test_without_a_terminator_hash_is_a_digit() -> None:
    c = DtmfCollector(DtmfSpec(terminator=""))
    assert c.press("#", 0.0) is None
    assert c.expire(5.0) == "#"


def _config(interrupt: bool = True, timeout: float = 0.3) -> AgentConfig:
    config = make_config()
    config.session.dtmf = DtmfSpec(inter_digit_timeout_seconds=timeout, interrupt_on_first_digit=interrupt)
    return config


async def test_keypad_digits_become_one_caller_turn() -> None:
    async with Harness(_config()) as h:
        h.session.push_dtmf("1")
        h.session.push_dtmf("2")
        h.session.push_dtmf("3#")
        transcript = await h.until(lambda: h.of_type("user_transcript"), what="the DTMF turn")
        assert [t.text for t in transcript] == ["DTMF 123"]
        await h.drain_agent()
        answer = await h.until(lambda: [a for a in h.of_type("agent_text") if a.final], what="the answer")
        assert answer[0].text == "You said: DTMF 123."
        with pytest.raises(InputRefused):
            h.session.push_dtmf("12x")


async def test_digits_without_a_terminator_are_taken_after_the_timeout() -> None:
    async with Harness(_config(timeout=0.2)) as h:
        h.session.push_dtmf("5")
        h.session.push_dtmf("0")
        turns = await h.until(lambda: h.of_type("user_transcript"), within=5, what="the timed-out input")
        assert [t.text for t in turns] == ["DTMF 50"]


@pytest.mark.parametrize("interrupt", [True, False])
async def test_the_first_digit_interrupts_the_agent_when_configured(interrupt: bool) -> None:
    async with Harness(_config(interrupt=interrupt, timeout=5.0)) as h:
        h.session.push_text("tell me a story")
        await h.until(lambda: h.step() is not None, what="the story starts")
        for _ in range(10):
            h.step()
        h.session.push_dtmf("4")
        if interrupt:
            assert h.of_type("interruption") or await h.until(lambda: h.of_type("interruption"))
            assert h.session.pull_audio() is None  # stopped at once, not at the end of the input
        else:
            assert h.session.pull_audio() is not None  # the agent talks on while digits collect
            assert not h.of_type("interruption")
        h.session.push_dtmf("#")
        turns = await h.until(
            lambda: [t for t in h.of_type("user_transcript") if t.text.startswith("DTMF")], what="DTMF turn"
        )
        assert turns[0].text == "DTMF 4"
        assert h.of_type("interruption")  # a complete input interrupts like a typed turn either way
