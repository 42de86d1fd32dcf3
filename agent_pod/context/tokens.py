"""Offline token estimates for context budgets.

tiktoken would download its BPE files, and a pod may have no network, so the count is an estimate that
errs high: one token per 3 bytes of UTF-8 plus a fixed overhead per message and per tool call. BPE
vocabularies of current chat models average about 4 characters per token in English prose and one
token per CJK character (3 bytes), so a budget in these tokens is met by the real count with room to
spare; random strings (hashes, base64) can be denser, which tool results rarely are.
"""

from __future__ import annotations

from ..conversation import ChatMessage

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD = 4  # role and separators of the chat format
TOOL_CALL_OVERHEAD = 8  # id, type and the function wrapper


def text_tokens(text: str) -> int:
    size = len(text) if text.isascii() else len(text.encode("utf-8"))  # isascii is O(1) in CPython
    return -(-size // BYTES_PER_TOKEN)


def message_tokens(message: ChatMessage) -> int:
    if not message.tool_calls:
        return MESSAGE_OVERHEAD + text_tokens(message.content)
    calls = sum(
        TOOL_CALL_OVERHEAD + text_tokens(c.name) + text_tokens(c.arguments) for c in message.tool_calls
    )
    return MESSAGE_OVERHEAD + text_tokens(message.content) + calls


def messages_tokens(messages: list[ChatMessage]) -> int:
    return sum(message_tokens(m) for m in messages)
