"""A person on the agent's web page: headless Debian Chromium with a fake microphone playing a WAV."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from .pod import espeak_wav

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """espeak-ng "hello" with 1.5 s of silence before (the call connects meanwhile) and 2 s after."""
    raw = espeak_wav("hello", tmp_path / "hello-raw.wav")
    wav = tmp_path / "hello.wav"
    subprocess.run(["sox", str(raw), "-r", "48000", str(wav), "pad", "1.5", "2"], check=True)
    return wav


def chromium_args(wav: Path) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--autoplay-policy=no-user-gesture-required",
        # The pod offers media on loopback only; Chromium skips loopback candidates unless told.
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]


async def call_from_web_page(url: str, wav: Path, profile: Path) -> dict[str, Any]:
    """Open ``url``, press Call, speak ``wav``, wait for a transcript, an answer and audible agent audio,
    hang up; returns the page's call state (transcripts, agentTexts, ...)."""
    async with async_playwright() as pw:
        # A fresh profile (--user-data-dir) per call.
        browser = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=chromium_args(wav), headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(url)
            assert await page.title() == "voicefleet agent"
            await page.click("#call")
            await page.wait_for_function("window.voicefleet.status === 'connected'", timeout=30_000)
            await page.wait_for_function("window.voicefleet.transcripts.length > 0", timeout=60_000)
            await page.wait_for_function("window.voicefleet.agentTexts.length > 0", timeout=60_000)
            await page.wait_for_function("window.voicefleet.maxLevel > 0.05", timeout=30_000)
            state: dict[str, Any] = await page.evaluate("window.voicefleet")
            assert await page.locator("#log li.user").first.inner_text() == state["transcripts"][0]
            assert await page.locator("#log li.agent").count() >= 1
            energy = await page.evaluate(
                """async () => {
                    let total = 0;
                    (await window.voicefleetStats()).forEach((r) => {
                        if (r.type === 'inbound-rtp' && r.kind === 'audio') total += r.totalAudioEnergy || 0;
                    });
                    return total;
                }"""
            )
            assert energy > 0, "the browser's WebRTC stats saw the agent's audio"
            await page.click("#hangup")
            await page.wait_for_function("window.voicefleet.status === 'ended'", timeout=10_000)
            return state
        finally:
            await browser.close()


def silent_wav(path: Path, seconds: float = 1.0) -> Path:
    """A 48 kHz mono WAV of silence: a fake microphone that says nothing (the test types instead)."""
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", str(path), "trim", "0", str(seconds)], check=True)
    return path


@asynccontextmanager
async def web_page(url: str, wav: Path, profile: Path) -> AsyncIterator[Page]:
    """Headless Chromium (a fresh profile) on ``url``, its fake microphone playing ``wav``."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=chromium_args(wav), headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(url)
            yield page
        finally:
            await browser.close()
