"""CORS for the routes a web page calls: the session API, key minting and WebRTC signaling.

No cookies are involved (credentials travel in the Authorization header or the body), so
Access-Control-Allow-Credentials is never sent. With the default policy ("*") any origin may call;
a configured list answers only those origins (echoing the one that asked, with ``Vary: Origin``),
and other origins get no CORS headers, so their browsers refuse to read the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import CorsSpec

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOWED_HEADERS = (
    "Content-Type, Authorization, Voicefleet-Resume-Token, Voicefleet-Migration-Token, "
    "Voicefleet-Accepts-Migration"
)
EXPOSED_HEADERS = "Location, Retry-After, Voicefleet-Session-Id, Voicefleet-Resume-Token"
PREFLIGHT_MAX_AGE_SECONDS = 600


class CorsPolicy:
    def __init__(self, spec: CorsSpec) -> None:
        self.any_origin = "*" in spec.allowed_origins
        self.origins = frozenset(o.rstrip("/") for o in spec.allowed_origins if o != "*")

    def _allow(self, request: web.Request) -> dict[str, str]:
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        origin = request.headers.get("Origin", "")
        if origin in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` with CORS headers on every answer it gives (errors too: a page reads why)."""

        async def with_cors(request: web.Request) -> web.StreamResponse:
            response = await handler(request)
            allow = self._allow(request)
            if allow:
                response.headers.update(allow)
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            return response

        return with_cors

    def preflight(self, methods: str) -> Handler:
        """The answer to a CORS preflight (OPTIONS) for a route taking ``methods``."""

        async def answer(request: web.Request) -> web.StreamResponse:
            allow = self._allow(request)
            if not allow:
                return web.Response(status=403, text="origin not allowed")
            return web.Response(
                status=204,
                headers={
                    **allow,
                    "Access-Control-Allow-Methods": methods,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
                },
            )

        return answer

    def routes(self, method: str, path: str, handler: Handler) -> list[web.RouteDef]:
        return [
            web.route(method, path, self.wrap(handler)),
            web.options(path, self.preflight(f"{method}, OPTIONS")),
        ]
