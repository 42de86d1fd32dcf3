"""Flow specs for the tests: a receptionist that hands over to booking and billing specialists."""

from __future__ import annotations

import json
from typing import Any

RECEPTION_PROMPT = "You are the front desk of Chez Voice."
BILLING_PROMPT = "You are the billing specialist."
BOOKING_TASK = "Book a table: ask for the time and the number of people."


def scripted(rules: list[dict[str, Any]], **options: str) -> dict[str, Any]:
    """A node's own scripted LLM (wire form)."""
    return {"provider": "scripted", "options": {"rules": json.dumps(rules), **options}}


def receptionist_flow(**overrides: Any) -> dict[str, Any]:
    """reception -go_to_billing-> billing, -go_to_booking-> booking -book_table[people=2]-> billing."""
    billing: dict[str, Any] = {
        "name": "billing",
        "rolePrompt": BILLING_PROMPT,
        "taskPrompt": "Explain the bill.",
        "tools": ["refund"],
        "llm": scripted([{"match": ".", "reply": "Billing here. {system_prompt}"}]),
        "transitions": [
            {"function": "back_to_reception", "to": "reception", "description": "Anything else."}
        ],
    }
    flow: dict[str, Any] = {
        "initialNode": "reception",
        "nodes": [
            {
                "name": "reception",
                "rolePrompt": RECEPTION_PROMPT,
                "tools": [],
                "transitions": [
                    {"function": "go_to_billing", "to": "billing", "description": "Questions about a bill."},
                    {"function": "go_to_booking", "to": "booking", "description": "Booking a table."},
                ],
            },
            {
                "name": "booking",
                "taskPrompt": BOOKING_TASK,
                "tools": ["book_table"],
                "transitions": [
                    {"onTool": "book_table", "when": {"field": "people", "equals": "2"}, "to": "billing"}
                ],
            },
            billing,
        ],
    }
    for node in flow["nodes"]:
        node.update(overrides.get(node["name"], {}))
    return flow
