"""Limits of the pod's HTTP surface: body size, slow or vanished clients.

Every request body is read here, before any handler runs, within ``max_body_bytes`` (chunked bodies
included: 413 with a JSON error) and ``body_timeout_seconds`` (a body trickled slower: 408, and the
connection is closed). A client that goes away mid-body costs one debug line, not a traceback.
Headers have ``header_timeout_seconds`` from the connection's start (or the previous response):
aiohttp's keep-alive timer closes a connection whose request has not arrived by then. Handlers then
find the body in ``request.read()`` (cached), never on the socket.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from ..sessions.refusals import http_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 64 * 1024
    # Also how long an idle keep-alive connection stays open.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    # After an answer given before the body was read (413, 408), the rest is read and dropped this long
    # at most, so the client sees the answer rather than a reset.
    lingering_seconds: float = 2.0


def body_guard(limits: HttpLimits) -> Middleware:
    too_large = f"request body is larger than {limits.max_body_bytes} bytes"

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        if request.content_length is not None and request.content_length > limits.max_body_bytes:
            return http_error("too_large", too_large)
        try:
            async with asyncio.timeout(limits.body_timeout_seconds):
                await request.read()  # bounded by the app's client_max_size
        except web.HTTPRequestEntityTooLarge:
            return http_error("too_large", too_large)
        except TimeoutError:
            response = http_error(
                "request_timeout", f"request body not received within {limits.body_timeout_seconds:g} s"
            )
            response.force_close()
            return response
        except (ConnectionError, RequestPayloadError) as exc:
            # The client went away (or broke the framing) mid-body: nobody is left to answer.
            problem = str(exc) or type(exc).__name__
            log.debug("request body not received: %s", problem, extra={"path": request.path})
            response = http_error("invalid_argument", "the request body was cut short")
            response.force_close()
            return response
        return await handler(request)

    return guard
