"""The pod's web page in headless Chromium follows its call from the front desk to the billing agent:
the LLM transfers it, the page switches to a billing pod on its own and the conversation goes on there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import silent_wav, web_page
from tests.transfer.conftest import ANNOUNCE, Desks

pytestmark = pytest.mark.browser


async def test_the_web_page_follows_its_call_to_the_billing_agent(desks: Desks, tmp_path: Path) -> None:
    front = await desks.add(desks.front, "front-0")
    billing = await desks.add(desks.billing, "billing-0")
    microphone = silent_wav(tmp_path / "silence.wav")
    async with web_page(front.http_url + "/", microphone, tmp_path / "profile") as page:
        await page.click("#call")
        await page.wait_for_function("window.voicefleet.status === 'connected'", timeout=30_000)
        await page.fill("#text", "I have a billing question")
        await page.press("#text", "Enter")
        await page.wait_for_function(
            "window.voicefleet.migrations === 1 && window.voicefleet.completedMigrations.length === 1",
            timeout=20_000,
        )
        state: dict[str, Any] = await page.evaluate("window.voicefleet")
        assert state["status"] == "connected" and state["ended"] is None, state
        assert state["pods"] == ["front-0", "billing-0"] and not state["errors"], state
        assert state["agentTexts"] == [ANNOUNCE]
        await page.fill("#text", "what do I owe")
        await page.press("#text", "Enter")
        await page.wait_for_function("window.voicefleet.agentTexts.length >= 2", timeout=15_000)
        texts = await page.evaluate("window.voicefleet.agentTexts")
        assert texts[1] == "You said: what do I owe"
        assert front.hub is not None and front.hub.live_sessions == 0
        assert billing.hub is not None and billing.hub.live_sessions == 1
        seen = desks.llm_requests("BILLING desk")[-1]
        assert [m["content"] for m in seen if m["role"] == "user"] == [
            "I have a billing question",
            "what do I owe",
        ]
