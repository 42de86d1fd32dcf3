"""Memory blocks and their writers (pure): limits refuse with a reason, slots are validated, tool
results and LLM extractions map into blocks, configuration errors name the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agent_pod.config import AgentConfig, MemoryBlockSpec, ToolMemoryWrite
from agent_pod.context.blocks import initial_blocks, merge_blocks, slot_values, write_slots, write_text
from agent_pod.context.writers import (
    apply_extraction,
    apply_tool_write,
    extraction_request,
    parse_extraction,
)
from agent_pod.conversation import ChatMessage, Conversation


def blocks():
    return initial_blocks(
        [
            MemoryBlockSpec(label="caller_profile", description="Who calls", initial="VIP", read_only=True),
            MemoryBlockSpec(
                label="booking",
                description="Booking slots",
                kind="slots",
                slots=["day", "party"],
                limit_chars=60,
            ),
            MemoryBlockSpec(label="facts", description="Facts", limit_chars=20),
        ]
    )


def test_writes_over_the_limit_are_refused_with_the_reason_and_change_nothing():
    profile, booking, facts = blocks()
    assert write_text(facts, "likes tea").written and facts.value == "likes tea"
    refused = write_text(facts, "x" * 21)
    assert not refused.written and refused.reason == "facts: 21 characters exceed its limit of 20"
    assert facts.value == "likes tea"
    assert write_text(profile, "someone else").reason == "caller_profile: read-only"
    assert write_slots(booking, {"day": "friday", "party": 4}).written
    assert slot_values(booking) == {"day": "friday", "party": 4}
    too_long = write_slots(booking, {"day": "the first friday after the next full moon please"})
    assert not too_long.written and "exceed its limit of 60" in too_long.reason
    assert slot_values(booking) == {"day": "friday", "party": 4}
    unknown = write_slots(booking, {"colour": "red"})
    assert not unknown.written and unknown.reason == "booking: unknown slots colour"
    assert write_slots(booking, {"party": None}).written and slot_values(booking) == {"day": "friday"}


def test_carried_values_return_unless_they_no_longer_fit():
    _, booking, facts = carried = blocks()
    write_slots(booking, {"day": "monday"})
    write_text(facts, "allergic to nuts")
    again = merge_blocks(blocks(), carried)
    assert slot_values(again[1]) == {"day": "monday"} and again[2].value == "allergic to nuts"
    tighter = initial_blocks([MemoryBlockSpec(label="facts", description="Facts", limit_chars=16)])
    assert merge_blocks(tighter, carried)[0].value == "allergic to nuts"
    tightest = initial_blocks([MemoryBlockSpec(label="facts", description="Facts", limit_chars=16)])
    tightest[0].limit = 10
    assert merge_blocks(tightest, carried)[0].value == ""


def test_tool_results_map_into_slots_and_text():
    _, booking, facts = memory = blocks()
    result = json.dumps({"day": "friday", "party": 2, "confirmation": "BK-1"})
    assert apply_tool_write(memory, ToolMemoryWrite(tool="book", block="booking"), result).written
    assert slot_values(booking) == {"day": "friday", "party": 2}  # only the block's slots
    write = ToolMemoryWrite(tool="book", block="facts", field="confirmation")
    assert apply_tool_write(memory, write, result).written and facts.value == "BK-1"
    missing = ToolMemoryWrite(tool="book", block="facts", field="nothing")
    assert apply_tool_write(memory, missing, result).reason == "facts: the book result has no 'nothing'"
    slot = ToolMemoryWrite(tool="book", block="booking", slot="day", field="confirmation")
    assert apply_tool_write(memory, slot, result).written and slot_values(booking)["day"] == "BK-1"


def test_extraction_replies_are_validated_against_the_writable_blocks():
    memory = blocks()
    update = parse_extraction(memory, '```json\n{"booking": {"day": "sunday"}, "facts": "vegan"}\n```')
    assert update == {"booking": {"day": "sunday"}, "facts": "vegan"}
    assert all(r.written for r in apply_extraction(memory, update))
    assert slot_values(memory[1]) == {"day": "sunday"} and memory[2].value == "vegan"
    assert parse_extraction(memory, "{}") == {}
    with pytest.raises(ValueError, match=r"caller_profile: Extra inputs are not permitted"):
        parse_extraction(memory, '{"caller_profile": "hacked"}')
    with pytest.raises(ValueError, match=r"booking.colour"):
        parse_extraction(memory, '{"booking": {"colour": "red"}}')
    with pytest.raises(ValueError, match="extraction reply"):
        parse_extraction(memory, "Sure! The caller wants Friday.")
    request = extraction_request(memory, [ChatMessage(role="user", content="friday please")])
    assert "booking (slots: day, party" in request[0].content and "caller_profile" not in request[0].content
    assert request[1].content.startswith("Update the memory") and "user: friday please" in request[1].content


@pytest.mark.parametrize(
    ("memory", "field"),
    [
        ({"blocks": [{"label": "a", "description": "d", "slots": ["x"]}]}, "slots needs kind: slots"),
        (
            {"blocks": [{"label": "a", "description": "d", "limitChars": 16, "initial": "x" * 17}]},
            "limitChars",
        ),
        ({"blocks": [{"label": "a", "description": "d", "kind": "slots", "initial": "[1]"}]}, "JSON object"),
        ({"toolWrites": [{"tool": "t", "block": "nope"}]}, r"memory.toolWrites\[0\].block: no memory block"),
        (
            {
                "blocks": [{"label": "a", "description": "d", "kind": "slots", "slots": ["x"]}],
                "toolWrites": [{"tool": "t", "block": "a", "slot": "y"}],
            },
            r"memory.toolWrites\[0\].slot",
        ),
        ({"blocks": [{"label": "Bad Label", "description": "d"}]}, "label"),
        (
            {"lookups": [{"tool": "crm", "block": "nope", "trigger": "session_start"}]},
            r"memory.lookups\[0\].block: no memory block",
        ),
        (
            {
                "blocks": [{"label": "a", "description": "d"}],
                "lookups": [
                    {"tool": "crm", "block": "a", "trigger": "caller_turn", "arguments": {"q": "env.HOME"}}
                ],
            },
            r"lookups.0.arguments.q",
        ),
    ],
)
def test_bad_memory_specs_are_refused_naming_the_field(memory, field):
    with pytest.raises(ValidationError, match=field):
        AgentConfig.model_validate({"memory": memory})


def test_context_target_must_not_exceed_the_maximum():
    with pytest.raises(ValidationError, match=r"targetTokens must be <= context\.maxTokens"):
        AgentConfig.model_validate({"context": {"maxTokens": 1000, "targetTokens": 2000}})


def test_a_snapshot_without_memory_or_summary_reads_as_before():
    """Empty memory and summary stay out of the snapshot: a pod of an older revision (which forbids unknown
    fields) can still resume the call during a rollout."""
    plain = Conversation(session_id="s", prompt_id="p")
    assert {"memory", "summary", "summaryThrough"}.isdisjoint(plain.dump())
    kept = Conversation(session_id="s", prompt_id="p", summary="booked", summary_through=3, memory=blocks())
    again = Conversation.model_validate_json(kept.model_dump_json(by_alias=True))
    assert again == kept and again.memory[1].kind == "slots"
