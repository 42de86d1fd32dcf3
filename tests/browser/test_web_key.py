"""The web page on a fleet that requires credentials: it calls with a short-lived browser key handed to
it in the URL fragment, and without one it says why it cannot call (headless Chromium, real pod)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from agent_pod.runtime import Pod
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.settings import PodSettings
from tests.support.browser import silent_wav, web_page
from tests.support.pod import pod_ports, synthetic_config

pytestmark = pytest.mark.browser


async def test_the_page_calls_with_a_short_lived_key_from_its_url(tmp_path: Path) -> None:
    issuer_key, entry = new_api_key("acme", ["sessions:create", "keys:issue"])
    (tmp_path / "creds" / "api").mkdir(parents=True)
    (tmp_path / "creds" / "api" / "keyring.json").write_text(json.dumps(Keyring(keys=[entry]).dump()))
    config = synthetic_config(
        transport={"webrtc": {"enabled": True}},
        auth={"required": True, "apiKeysSecretRef": {"name": "api", "key": "keyring.json"}},
    )
    settings = PodSettings(bind_host="127.0.0.1", pod_name="web", credentials_dir=tmp_path / "creds")
    pod = Pod(settings, config, pod_ports())
    await pod.start()
    try:
        # The site's backend mints a key for the page with its own long-lived API key.
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {issuer_key}"}
            async with http.post(pod.http_url + "/v1/keys", json={"ttlSeconds": 120}, headers=headers) as r:
                assert r.status == 201
                browser_key = (await r.json())["key"]
        microphone = silent_wav(tmp_path / "silence.wav")
        async with web_page(pod.http_url + "/", microphone, tmp_path / "no-key") as page:
            await page.click("#call")
            await page.wait_for_function("window.voicefleet.status === 'failed'", timeout=15_000)
            errors = await page.evaluate("window.voicefleet.errors")
            assert any("credential is required" in e for e in errors), errors
        async with web_page(f"{pod.http_url}/#key={browser_key}", microphone, tmp_path / "key") as page:
            assert "key=" not in page.url  # dropped from the address bar (and so from history) at once
            await page.click("#call")
            await page.wait_for_function("window.voicefleet.status === 'connected'", timeout=30_000)
            await page.fill("#text", "first")
            await page.press("#text", "Enter")
            await page.wait_for_function(
                "window.voicefleet.agentTexts.includes('You said: first.')", timeout=15_000
            )
    finally:
        await pod.stop()
