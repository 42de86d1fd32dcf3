"""Fixtures: the local OpenAI and Deepgram wire-protocol servers on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.wire.deepgram_server import DeepgramServer
from tests.wire.openai_server import OpenAIServer


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    server = OpenAIServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def deepgram_server() -> AsyncIterator[DeepgramServer]:
    server = DeepgramServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
