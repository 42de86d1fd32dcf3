"""The pod's web page in headless Chromium: a fake microphone plays espeak-ng; the agent is seen and heard."""

from __future__ import annotations

import pytest

from tests.support.browser import call_from_web_page
from tests.support.pod import offline_config, wait_until

pytestmark = pytest.mark.browser


async def test_a_person_calls_the_agent_from_the_web_page(pod_factory, speech_wav, tmp_path):
    pod = await pod_factory(offline_config())
    state = await call_from_web_page(pod.http_url + "/", speech_wav, tmp_path / "profile")
    assert "hello" in state["transcripts"][0].lower()
    assert state["agentTexts"][0].startswith("Hello")
    assert pod.hub is not None
    await wait_until(lambda: pod.hub.live_sessions == 0, 10, "the pod to end the session after hang-up")
