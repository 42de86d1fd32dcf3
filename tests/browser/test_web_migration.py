"""The pod's web page in headless Chromium follows its call to another pod when its pod drains: no user
action, the call stays connected, and the conversation goes on at the new pod (real Redis, two pods)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.browser import silent_wav, web_page
from tests.support.migration import Fleet, user_turns
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.browser


async def say(page: Page, text: str, answers: int) -> list[str]:
    """Type ``text`` to the agent and wait for the page to show answer number ``answers``."""
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await page.wait_for_function(f"window.voicefleet.agentTexts.length >= {answers}", timeout=15_000)
    texts: list[str] = await page.evaluate("window.voicefleet.agentTexts")
    return texts


async def packets_sent(page: Page) -> int:
    """Audio packets the page's current connection sent (its microphone)."""
    sent: int = await page.evaluate(
        """async () => {
            let sent = 0;
            (await window.voicefleetStats()).forEach((r) => {
                if (r.type === 'outbound-rtp' && r.kind === 'audio') sent += r.packetsSent || 0;
            });
            return sent;
        }"""
    )
    return sent


async def test_the_web_page_follows_its_call_to_another_pod(fleet: Fleet, tmp_path: Path) -> None:
    a = await fleet.add("pod-a")
    b = await fleet.add("pod-b")
    assert a.hub is not None and b.hub is not None
    microphone = silent_wav(tmp_path / "silence.wav")
    async with web_page(a.http_url + "/", microphone, tmp_path / "profile") as page:
        await page.click("#call")
        await page.wait_for_function("window.voicefleet.status === 'connected'", timeout=30_000)
        assert await say(page, "first", 1) == ["You said: first."]
        drain = asyncio.ensure_future(a.drain())
        # the page follows on its own; the drain ends once the call has moved (drainTimeoutSeconds is 60)
        await asyncio.wait_for(drain, 15)
        await page.wait_for_function(
            "window.voicefleet.migrations === 1 && window.voicefleet.completedMigrations.length === 1",
            timeout=10_000,
        )
        state: dict[str, Any] = await page.evaluate("window.voicefleet")
        assert state["status"] == "connected" and state["ended"] is None, state
        assert state["pods"] == ["pod-a", "pod-b"] and state["migrationsFailed"] == 0
        assert state["completedMigrations"][0]["from_pod"] == "pod-a"
        assert not state["errors"], state["errors"]
        assert a.hub.live_sessions == 0 and b.hub.live_sessions == 1

        # the microphone now goes to pod B, and the conversation goes on there
        # (a connection's audio sender has no track until the switch, and sends nothing without one)
        async def microphone_flows() -> bool:
            return await packets_sent(page) > 0

        await async_wait_for(microphone_flows, 10, what="microphone packets to pod B")
        assert await say(page, "second", 2) == ["You said: first.", "You said: second."]
        assert user_turns(b) == ["first", "second"]
        assert await page.locator("#log li.agent").count() == 2
        # hanging up ends the call (DELETE) on pod B, where it now is
        [moved] = b.hub.live()
        await page.click("#hangup")
        await page.wait_for_function("window.voicefleet.status === 'ended'", timeout=10_000)
        await asyncio.wait_for(moved.finished.wait(), 10)
        assert moved.end_reason == "client_ended"
