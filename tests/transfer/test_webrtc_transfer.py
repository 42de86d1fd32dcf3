"""A WebRTC call handed from the front desk to the billing agent: the aiortc caller follows the transfer
as it follows migrations, with a second peer connection (real Redis, real WebRTC on loopback)."""

from __future__ import annotations

from agent_pod.client.webrtc_client import WebRTCCaller
from tests.support.migration import answers, events
from tests.support.pod import wait_until
from tests.transfer.conftest import ANNOUNCE, Desks


async def test_a_webrtc_call_follows_the_transfer_and_input_said_meanwhile_is_heard_once(
    desks: Desks,
) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    async with WebRTCCaller(front.http_url + "/v1/webrtc", auto_follow=False) as call:
        first_pc = call.pc
        call.send_text("hello")
        await answers(call, 1)
        call.send_text("a billing question")
        await call.recorder.wait(lambda _: bool(events(call, "migration_offer")), 15)
        assert (await answers(call, 2))[1] == ANNOUNCE
        [offer] = events(call, "migration_offer")
        assert offer["pod"] == "billing-0" and offer["webrtc_url"].startswith(billing.http_url)
        # the call is frozen at the front desk: what the caller says now is held there, heard at billing
        call.send_text("said while moving")
        assert await call.follow(offer)
        await call.recorder.wait(lambda _: bool(events(call, "migration_completed")), 10)
        texts = await answers(call, 3)
        assert texts[2] == "You said: said while moving"
        assert call.pods == ["front-0", "billing-0"]
        assert call.recorder.summary.ended is None, "the front desk's 'migrated' end is not the call's end"
        billing_seen = desks.llm_requests("BILLING desk")
        assert len(billing_seen) == 1 and billing_seen[0][-1]["content"] == "said while moving"
        assert front.hub is not None and front.hub.live_sessions == 0
        await wait_until(lambda: first_pc.connectionState == "closed", 5, "the old connection to close")
        await call.end()
        await call.recorder.wait(lambda s: s.ended is not None, 5)
    assert call.recorder.summary.ended == "client_ended"


async def test_a_caller_that_cannot_reach_the_target_stays_on_the_front_desk(desks: Desks) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    async with WebRTCCaller(front.http_url + "/v1/webrtc", auto_follow=False) as call:
        call.send_text("a billing question")
        await call.recorder.wait(lambda _: bool(events(call, "migration_offer")), 15)
        [offer] = events(call, "migration_offer")
        call.send_text("said while moving")  # held by the front desk
        await billing.stop()  # the target goes away before the caller gets there
        assert not await call.follow(offer)
        texts = await answers(call, 2)
        assert texts[1] == "You said: said while moving"  # the held input is heard where the call stays
        [error] = events(call, "error")
        assert "did not happen" in error["message"] and not error["fatal"]
        assert not events(call, "migration_completed")
        assert front.hub is not None
        (live,) = front.hub.live()
        messages = live.session.conversation.messages
        assert [m.content for m in messages if m.role == "user"] == [
            "a billing question",
            "said while moving",
        ]
        note = (
            f"The transfer to {desks.billing_name} did not happen (the caller did not reach the other agent)."
        )
        assert any(m.role == "system" and m.content.startswith(note) for m in messages)
        assert live.session.conversation.transfers == []
        await call.end()
