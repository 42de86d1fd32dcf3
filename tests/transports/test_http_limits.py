"""The pod's HTTP port against raw-socket clients: oversized and chunked bodies, clients that vanish
mid-body, and slowloris connections that trickle their headers or body."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from agent_pod.transports.http_guard import HttpLimits
from tests.support.pod import wait_until

LIMITS = HttpLimits(
    max_body_bytes=64 * 1024, header_timeout_seconds=1.0, body_timeout_seconds=1.0, lingering_seconds=0.5
)
# A closed connection must be seen within its timeout plus this (the loop, a loaded CI machine).
SLACK = 1.5


async def exchange(port: int, request: bytes, within: float = 10.0) -> tuple[int, bytes, float]:
    """Send ``request`` whole, read until the server closes: (status, body, seconds until closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(within):
            raw = await reader.read()  # to EOF: these answers close the connection
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, time.monotonic() - started


def chunked(path: str, total: int, chunk: int = 8192) -> bytes:
    parts = [
        f"POST {path} HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    ]
    for _ in range(total // chunk):
        parts.append(f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n")
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records an operator would see: warnings and worse, or any traceback."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.fixture
async def pod(pod_factory):
    return await pod_factory(http_limits=LIMITS)


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/webrtc"])
async def test_a_chunked_body_over_the_limit_is_refused_with_413(pod, path, caplog):
    caplog.set_level(logging.DEBUG)
    status, body, _ = await exchange(pod.http_port, chunked(path, 256 * 1024))
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert str(LIMITS.max_body_bytes) in error["message"]
    assert loud(caplog) == []


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(pod, caplog):
    caplog.set_level(logging.DEBUG)
    head = b"POST /v1/sessions HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
    status, body, _ = await exchange(pod.http_port, head + b"Content-Length: 10000000\r\n\r\n")
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert loud(caplog) == []


async def test_a_body_under_the_limit_still_works_chunked(pod):
    request = (
        chunked("/v1/sessions", 0).replace(b"0\r\n\r\n", b"2\r\n{}\r\n0\r\n\r\n")
        + b"GET /healthz HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", pod.http_port)
    writer.write(request)
    async with asyncio.timeout(10):
        raw = await reader.read()
    writer.close()
    # two answers on one keep-alive connection: the session grant, then the health check
    assert raw.startswith(b"HTTP/1.1 201")
    assert raw.count(b"HTTP/1.1 ") == 2 and b'"alive": true' in raw


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/webrtc"])
async def test_a_client_gone_mid_body_costs_a_debug_line_not_a_traceback(pod, path, caplog):
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", pod.http_port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
        "Content-Length: 5000\r\n\r\n".encode()
        + b" " * 100
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await wait_until(
        lambda: any("request body not received" in r.getMessage() for r in caplog.records),
        5,
        "the pod to notice the client left",
    )
    assert loud(caplog) == []


async def test_trickled_headers_are_cut_off(pod):
    reader, writer = await asyncio.open_connection("127.0.0.1", pod.http_port)
    started = time.monotonic()
    writer.write(b"POST /v1/sessions HTTP/1.1\r\nHost: pod\r\n")

    async def trickle() -> None:
        for _ in range(100):
            await asyncio.sleep(0.1)  # the slow client's pace, not synchronisation
            writer.write(b"X")
            await writer.drain()

    sender = asyncio.ensure_future(trickle())
    try:
        async with asyncio.timeout(LIMITS.header_timeout_seconds + SLACK):
            assert await reader.read() == b""  # closed without an answer
    finally:
        sender.cancel()
        writer.close()
    assert time.monotonic() - started >= LIMITS.header_timeout_seconds - 0.1


async def test_a_trickled_body_times_out_with_408_and_the_connection_closes(pod, caplog):
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", pod.http_port)
    started = time.monotonic()
    writer.write(
        b"POST /v1/sessions HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n{"
    )

    async def trickle() -> None:
        for _ in range(100):
            await asyncio.sleep(0.1)
            writer.write(b" ")
            await writer.drain()

    sender = asyncio.ensure_future(trickle())
    try:
        within = LIMITS.body_timeout_seconds + LIMITS.lingering_seconds + SLACK
        async with asyncio.timeout(within):
            raw = await reader.read()
    finally:
        sender.cancel()
        writer.close()
    assert raw.startswith(b"HTTP/1.1 408")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert time.monotonic() - started >= LIMITS.body_timeout_seconds - 0.1
    assert loud(caplog) == []
