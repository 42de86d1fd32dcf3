"""A session handing its call over: quiet moments, input held back, and input replayed in order."""

from __future__ import annotations

import pytest

from agent_pod.audio.pcm import InvalidAudio
from agent_pod.sessions.records import HeldInput
from tests.pipeline.harness import CALLER_RATE, Harness, make_config
from tests.support.audio import silence
from tests.support.pod import tone


async def test_quiet_only_between_turns_and_not_while_held():
    async with Harness(make_config(transcript="hello")) as h:
        assert h.session.quiet
        h.session.push_text("hello there")
        assert not h.session.quiet  # a queued turn
        await h.drain_agent()
        await h.until(lambda: h.of_type("agent_text") and h.of_type("agent_text")[-1].final, what="final")
        assert h.session.quiet
        await h.play_caller(tone(CALLER_RATE, 0.3), then_silence_ms=0)
        assert not h.session.quiet  # the caller is mid-utterance
        await h.play_caller(b"", then_silence_ms=600)
        h.session.hold_input()
        assert not h.session.quiet  # already being handed over


async def test_held_input_is_not_heard_here_and_replays_in_order():
    async with Harness(make_config(transcript="hello")) as h:
        h.session.hold_input()
        await h.play_caller(tone(CALLER_RATE, 0.4), then_silence_ms=600)  # speech, held
        h.session.push_text("tell me a story")
        with pytest.raises(InvalidAudio):  # held input is still checked where it arrives
            h.session.push_audio(b"\x00", CALLER_RATE)
        assert h.events == [] and h.session.conversation.messages == []
        held = h.session.take_held()
        assert [bool(i.pcm) for i in held][:3] == [True, True, True] and held[-1].text == "tell me a story"
        assert h.session.take_held() == []  # the session keeps holding: nothing more is heard here


async def test_release_replays_another_pods_input_before_its_own():
    async with Harness(make_config(transcript="hello")) as h:
        h.session.hold_input()
        h.session.push_text("tell me a story")  # arrived here while the old pod's input was on its way
        from_old_pod = [HeldInput(rate=CALLER_RATE, pcm=tone(CALLER_RATE, 0.4) + silence(600, CALLER_RATE))]
        replayed = h.session.release_input(from_old_pod)
        assert replayed == pytest.approx(1.0, abs=0.01)
        await h.until(lambda: len(h.of_type("user_transcript")) >= 2, what="both turns")
        # both heard once (a typed turn skips STT, so it may come first)
        assert sorted(e.text for e in h.of_type("user_transcript") if e.final) == ["hello", "tell me a story"]


async def test_an_end_held_during_the_handover_ends_the_call_where_it_is_replayed():
    async with Harness(make_config()) as h:
        h.session.hold_input()
        assert h.session.hold_end()
        held = h.session.take_held()
        assert held == [HeldInput(end=True)]
        assert not h.session.ended  # the old pod does not end it
        h.session.release_input(held)
        await h.until(lambda: h.session.ended, what="the call ended")
        assert h.of_type("session_ended")[-1].reason == "client_ended"
