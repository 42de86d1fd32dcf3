from collections.abc import AsyncIterator

import pytest

from tests.knowledge.doc_server import DocServer
from tests.support.s3 import s3_bucket, s3_server  # noqa: F401 - fixtures of this directory


@pytest.fixture
async def doc_server() -> AsyncIterator[DocServer]:
    server = DocServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
