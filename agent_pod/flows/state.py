"""What a call's snapshot keeps of its flow: the current node, how it was entered, and the moves made."""

from __future__ import annotations

from pydantic import Field

from ..config import Model

MAX_LOGGED_MOVES = 100  # the log of a long call keeps its newest moves; seq goes on counting


class FlowMove(Model):
    """One committed transition."""

    seq: int = Field(description="1 for the call's first move, then counting up.")
    from_node: str = Field(alias="from")
    to_node: str = Field(alias="to")
    turn_id: str = Field(description="The agent turn that made the move.")
    call_id: str = Field(description="The tool (or transition function) call that chose it.")


class FlowState(Model):
    """The flow position of one call; restored with the conversation on whichever pod serves it."""

    node: str = Field(description="The current node.")
    entry_turn: str | None = Field(
        default=None, description="Turn in which the node was entered; none: the call started in it."
    )
    entry_offset: int = Field(
        default=0,
        ge=0,
        description="Messages of the entry turn (its user message first) said before the node took over.",
    )
    summary: str | None = Field(
        default=None, description="Summary of what came before the node (context policy summary)."
    )
    seq: int = Field(default=0, description="seq of the last move.")
    moves: list[FlowMove] = Field(default_factory=list, description="The newest moves, oldest first.")
