"""A drained pod that is being scraped waits for one last scrape before it exits, so what it counted
while draining reaches Prometheus; a pod nothing scrapes exits at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from tests.support.pod import PodProcess


async def scrape(pod: PodProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://{pod.metrics_address}/metrics") as r:
        return await r.text()


async def test_a_scraped_pod_exits_after_its_last_scrape(
    pod_process_factory: Callable[..., Awaitable[PodProcess]],
) -> None:
    pod = await pod_process_factory(name="scraped")
    await scrape(pod)
    pod.terminate()
    assert pod.proc is not None
    # Drained (no calls) but still up: it waits for the scrape that carries its final counts.
    done = asyncio.ensure_future(pod.wait_exit(within=20))
    finished, _ = await asyncio.wait({done}, timeout=2)
    assert not finished and pod.proc.returncode is None
    text = await scrape(pod)
    assert "voicefleet_sessions_total" in text
    assert await done == 0
    assert '"last scrape done"' in pod.log()


async def test_a_pod_nothing_scrapes_exits_at_once(
    pod_process_factory: Callable[..., Awaitable[PodProcess]],
) -> None:
    pod = await pod_process_factory(name="unscraped")
    pod.terminate()
    assert await pod.wait_exit(within=10) == 0
    assert "last scrape" not in pod.log()
