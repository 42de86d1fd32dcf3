"""BargeIn, the session's overlap state, on a real agent turn and playback (no session around it)."""

from __future__ import annotations

import logging

from agent_pod.config import BargeInSpec
from agent_pod.pipeline.barge_in import BargeIn
from agent_pod.pipeline.overlap import OverlapUtterance
from agent_pod.pipeline.playback import TurnPlayback
from agent_pod.pipeline.turn import AgentTurn, UserTurn

FRAME = b"\x01\x00" * 480


def _turn(frames: int) -> AgentTurn:
    playback = TurnPlayback(sample_rate=24000, frame_samples=480)
    piece = playback.add_piece("Once upon a time.", 0)
    for _ in range(frames):
        playback.push(piece, FRAME, 480)
    return AgentTurn(user=UserTurn(turn_id="turn-1", text="story", ended_at=0.0), playback=playback)


class _Session:
    """The two things BargeIn needs from a session: the running turn, and stopping it."""

    def __init__(self, turn: AgentTurn) -> None:
        self.turn: AgentTurn | None = turn
        self.interrupts = 0

    def interrupt(self) -> None:
        self.interrupts += 1


def _barge_in(session: _Session, **spec: object) -> BargeIn:
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    return BargeIn(BargeInSpec.model_validate(spec), 300, lambda: session.turn, session.interrupt, log)


async def test_nothing_played_yet_means_stop_now():
    turn = _turn(10)
    assert not _barge_in(_Session(turn)).pause()
    assert not turn.playback.paused


async def test_pause_holds_frames_and_a_backchannel_resumes_them():
    turn = _turn(10)
    session = _Session(turn)
    barge = _barge_in(session)
    assert turn.playback.pull() == FRAME
    barge.heard(300)
    assert barge.pause() and turn.playback.paused and barge.judging
    assert turn.playback.pull() is None and turn.playback.played_frames == 1
    barge.hearing = barge.overlapped
    assert not barge.judge("uh", final=False)  # may become "uh huh": nothing decided, not shown
    assert not barge.judge("uh huh", final=True)  # no turn
    assert session.interrupts == 0 and not turn.playback.paused and not barge.judging
    assert turn.playback.pull() == FRAME and turn.playback.played_frames == 2


async def test_speech_in_an_interim_interrupts_and_is_shown():
    turn = _turn(10)
    session = _Session(turn)
    barge = _barge_in(session)
    turn.playback.pull()
    barge.heard(400)
    barge.pause()
    barge.hearing = barge.overlapped
    assert barge.judge("what time", final=False)
    assert session.interrupts == 1


async def test_a_transcript_for_another_turn_does_not_stop_the_current_one():
    old, new = _turn(5), _turn(5)
    session = _Session(new)
    barge = _barge_in(session)
    barge.hearing = OverlapUtterance(old, 400)
    assert barge.judge("what time is it", final=True)  # still the caller's turn
    assert session.interrupts == 0


async def test_short_sounds_are_transcribed_only_when_long_enough_and_over_the_agent():
    session = _Session(_turn(5))
    barge = _barge_in(session, cancelMinSpeechMs=120)
    barge.heard(100)
    assert barge.short_sound() is None
    barge.heard(200)
    overlap = barge.short_sound()
    assert overlap is not None and overlap.turn is session.turn and overlap.voiced_ms == 200
    session.turn = None
    assert barge.short_sound() is None
