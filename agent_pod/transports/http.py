"""The pod's HTTP surface: web page, WebRTC signaling, health probes, session API; metrics apart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .http_guard import HttpLimits, body_guard

WEB_ROOT = Path(str(resources.files("agent_pod") / "web"))


@dataclass
class Health:
    """Liveness is the process answering; readiness is started and not draining."""

    started: bool = False
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.started and not self.draining


def build_app(
    health: Health, extra_routes: list[web.RouteDef], limits: HttpLimits | None = None
) -> web.Application:
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_ROOT / "index.html")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"alive": True, "draining": health.draining})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response(
            {"ready": health.ready, "started": health.started, "draining": health.draining},
            status=200 if health.ready else 503,
        )

    limits = limits or HttpLimits()
    app = web.Application(client_max_size=limits.max_body_bytes, middlewares=[body_guard(limits)])
    app.add_routes(
        [
            web.get("/", index),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.static("/static", WEB_ROOT),
            *extra_routes,
        ]
    )
    return app


class Scrapes:
    """Counts /metrics requests, so a pod that is scraped can wait for one last scrape before it exits
    (what it counted while draining would otherwise never reach Prometheus)."""

    def __init__(self) -> None:
        self.count = 0
        self._seen = asyncio.Event()

    def saw(self) -> None:
        self.count += 1
        self._seen.set()

    async def next(self, within: float) -> bool:
        """Wait for a scrape after this call (up to ``within`` s); False if none came."""
        self._seen.clear()
        try:
            async with asyncio.timeout(within):
                await self._seen.wait()
        except TimeoutError:
            return False
        return True


def build_metrics_app(scrapes: Scrapes | None = None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        if scrapes is not None:
            scrapes.saw()
        return response

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics)])
    return app


async def serve(
    app: web.Application, host: str, port: int, limits: HttpLimits | None = None
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on host:port (0: a free port); returns the runner and the bound port."""
    limits = limits or HttpLimits()
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        # Closes a connection whose request line and headers have not arrived by then (slowloris).
        keepalive_timeout=limits.header_timeout_seconds,
        lingering_time=limits.lingering_seconds,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, int(runner.addresses[0][1])
