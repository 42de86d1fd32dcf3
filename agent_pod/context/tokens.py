"""Offline token estimates for context budgets.

tiktoken would download its BPE files, and a pod may have no network, so the count is an estimate made
to err high for what calls carry: a token per 4 ASCII letters or spaces, one per digit and one per
ASCII punctuation mark (numbers and JSON cost BPE tokenizers far more than prose), 1.5 per non-ASCII
character (CJK costs up to about 1.3 with cl100k), plus a fixed overhead per message and per tool call.
Measured against o200k_base and cl100k_base (docs/context.md): English prose 1.2-1.3x the real count,
JSON about 2x, CJK 1.2-1.5x, phone and account numbers 1.4x. Random mixed-case strings (base64, keys)
can be denser than the estimate; tool results rarely carry them.
"""

from __future__ import annotations

import string

from ..conversation import ChatMessage

LETTERS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators of the chat format
TOOL_CALL_OVERHEAD = 8  # id, type and the function wrapper
_ONE_TOKEN_EACH = b"0123456789" + string.punctuation.encode()  # digits and ASCII punctuation


def text_tokens(text: str) -> int:
    raw = text.encode("ascii", "ignore")
    non_ascii = len(text) - len(raw)
    letters = len(raw.translate(None, _ONE_TOKEN_EACH))  # letters, spaces, control characters
    return -(-letters // LETTERS_PER_TOKEN) + len(raw) - letters + -(-3 * non_ascii // 2)


def message_tokens(message: ChatMessage) -> int:
    if not message.tool_calls:
        return MESSAGE_OVERHEAD + text_tokens(message.content)
    calls = sum(
        TOOL_CALL_OVERHEAD + text_tokens(c.name) + text_tokens(c.arguments) for c in message.tool_calls
    )
    return MESSAGE_OVERHEAD + text_tokens(message.content) + calls


def messages_tokens(messages: list[ChatMessage]) -> int:
    return sum(message_tokens(m) for m in messages)
