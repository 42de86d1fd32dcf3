"""Streamed PCM16 in whole samples: HTTP chunk boundaries fall anywhere, even mid-sample."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def whole_samples(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Re-cut ``chunks`` so every piece holds whole 16-bit samples; a trailing odd byte is dropped."""
    carry = b""
    async for chunk in chunks:
        data = carry + chunk if carry else chunk
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        if cut:
            yield data[:cut]
