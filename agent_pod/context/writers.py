"""Memory writers (pure parts): a tool's result mapped into a block, and an LLM's extraction parsed and
validated against the blocks it may change."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ..config import ToolMemoryWrite
from ..conversation import ChatMessage
from .blocks import MemoryBlock, WriteResult, render_blocks, write_slots, write_text
from .summary import transcript_text

SlotValue = str | int | float | bool | None


def apply_tool_write(blocks: list[MemoryBlock], write: ToolMemoryWrite, result_json: str) -> WriteResult:
    """Copy (a field of) a tool's JSON result into a block or one of its slots."""
    block = next((b for b in blocks if b.label == write.block), None)
    if block is None:
        return WriteResult(write.block, False, f"{write.block}: no such block")
    try:
        value: Any = json.loads(result_json)
    except ValueError:
        value = result_json
    if write.field is not None:
        if not isinstance(value, dict) or write.field not in value:
            return WriteResult(
                block.label, False, f"{block.label}: the {write.tool} result has no {write.field!r}"
            )
        value = value[write.field]
    if block.kind == "text":
        return write_text(block, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    if write.slot is not None:
        return write_slots(block, {write.slot: value})
    if not isinstance(value, dict):
        return WriteResult(
            block.label, False, f"{block.label}: the {write.tool} result is not an object of slots"
        )
    # A result's other fields are not this block's business: only its slots are taken.
    return write_slots(block, {k: v for k, v in value.items() if not block.slots or k in block.slots})


EXTRACTION_INSTRUCTIONS = (
    "You keep the memory of a phone agent up to date. Read the memory and the last exchange of the call, "
    "then answer with ONE JSON object and nothing else. Its keys are block labels; give only the blocks "
    "that change. A slots block takes an object of the slots to set (null clears a slot); a text block "
    "takes its whole new text. Record only what the caller said or a tool returned. Answer {} when "
    "nothing changes.\nBlocks you may change:\n{blocks}"
)
EXTRACTION_REQUEST = "Update the memory from this exchange.\n\n{memory}\n\nLast exchange:\n{exchange}"


def _block_line(block: MemoryBlock) -> str:
    if block.kind == "slots":
        slots = ", ".join(block.slots) if block.slots else "any names"
        return (
            f"- {block.label} (slots: {slots}; at most {block.limit} characters as JSON): {block.description}"
        )
    return f"- {block.label} (text, at most {block.limit} characters): {block.description}"


def extraction_request(blocks: list[MemoryBlock], exchange: list[ChatMessage]) -> list[ChatMessage]:
    writable = [b for b in blocks if not b.read_only]
    return [
        ChatMessage(
            role="system",
            content=EXTRACTION_INSTRUCTIONS.replace("{blocks}", "\n".join(_block_line(b) for b in writable)),
        ),
        ChatMessage(
            role="user",
            content=EXTRACTION_REQUEST.format(
                memory=render_blocks(blocks), exchange=transcript_text(exchange)
            ),
        ),
    ]


def _update_model(blocks: list[MemoryBlock]) -> type[BaseModel]:
    forbid = ConfigDict(extra="forbid")
    fields: dict[str, Any] = {}
    for block in blocks:
        if block.read_only:
            continue
        if block.kind == "text":
            fields[block.label] = (str | None, None)
        elif block.slots:
            slot_fields: dict[str, Any] = {s: (SlotValue, None) for s in block.slots}
            slots = create_model(f"Slots_{block.label}", __config__=forbid, **slot_fields)
            fields[block.label] = (slots | None, None)
        else:
            fields[block.label] = (dict[str, SlotValue] | None, None)
    return create_model("MemoryUpdate", __config__=forbid, **fields)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_extraction(blocks: list[MemoryBlock], reply: str) -> dict[str, str | dict[str, Any]]:
    """The LLM's answer as {label: new text | slot updates}; ValueError naming the field when it is not
    JSON of the writable blocks."""
    text = _FENCE.sub("", reply.strip())
    try:
        update = _update_model(blocks).model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ValueError(f"extraction reply: {where}: {first['msg']}") from None
    out: dict[str, str | dict[str, Any]] = {}
    for label in update.model_fields_set:
        value = getattr(update, label)
        if isinstance(value, BaseModel):
            out[label] = value.model_dump(exclude_unset=True)
        elif value is not None:
            out[label] = value
    return out


def apply_extraction(blocks: list[MemoryBlock], update: dict[str, str | dict[str, Any]]) -> list[WriteResult]:
    results = []
    by_label = {b.label: b for b in blocks}
    for label, value in update.items():
        block = by_label[label]
        results.append(write_text(block, value) if isinstance(value, str) else write_slots(block, value))
    return results
