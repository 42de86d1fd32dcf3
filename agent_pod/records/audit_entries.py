"""The entries of a call's audit log and their chain: canonical JSON, each naming its predecessor's hash.

Every entry is one line of canonical JSON (keys sorted, no whitespace, UTF-8) carrying ``seq`` (0, 1,
2, ...) and ``prev``, the SHA-256 of the previous line's bytes (64 zeros for the first). Changing,
removing or reordering any line breaks the chain at the next one; the signed head (audit_keys.py)
pins the last.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GENESIS = "0" * 64


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    seq: int = Field(ge=0)
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    at: float = Field(description="Unix time the entry was appended.")


class CallStarted(_Entry):
    type: Literal["call_started"] = "call_started"
    call_id: str
    log: str = Field(description="This log: <call_id>/<leg>; a resumed or moved call opens a new leg.")
    agent: str
    namespace: str
    prompt_id: str
    prompt_version: str
    pod: str
    transport: str
    resumed: bool = False
    moved_from: str | None = None
    redact: list[str] = Field(description="The PII kinds redacted in this log's text.")
    raw_text_kept: bool = False
    key_id: str = Field(default="", description="Id of the key the head is signed with; empty: unsigned.")


class ToolCallEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str
    name: str
    arguments: str = Field(description="JSON arguments, redacted.")
    outcome: str
    attempts: int = 0
    latency_ms: float = 0.0
    error: str = ""


class TurnEntry(_Entry):
    type: Literal["turn"] = "turn"
    turn_id: str
    node: str = Field(default="", description="The flow node (empty without flows).")
    sent_to_tts: str
    played_text: str
    played_ms: int
    interrupted: bool
    retranscript: str | None = None
    wer: float | None = None
    flagged: bool = False
    check: str | None = Field(default=None, description="How the flag was decided: align | wer.")
    divergent_words: list[str] = Field(
        default_factory=list, description="Played words the audio does not say (+<after WORD>: extra speech)."
    )
    retranscription: str = Field(description="pending | done | skipped | failed")
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    tools: list[ToolCallEntry] = Field(default_factory=list)
    knowledge_docs: list[str] = Field(
        default_factory=list, description="Knowledge base documents the answer was grounded in."
    )
    redactions: dict[str, int] = Field(default_factory=dict, description="PII kind -> how many redacted.")
    raw: str | None = Field(default=None, description="Encrypted unredacted text (keepRawText).")


class RecordingEntry(_Entry):
    """The finished recording: appended by whoever holds it once it is complete."""

    type: Literal["recording"] = "recording"
    location: str = Field(
        description="Where the recording is: a path relative to the records root, or a URL."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class CallEnded(_Entry):
    type: Literal["call_ended"] = "call_ended"
    reason: str
    turns: int
    tools: list[ToolCallEntry] = Field(
        default_factory=list, description="Tool calls that finished after their turn's entry."
    )


Entry = Annotated[CallStarted | TurnEntry | RecordingEntry | CallEnded, Field(discriminator="type")]


class EntryLine(BaseModel):
    entry: Entry
