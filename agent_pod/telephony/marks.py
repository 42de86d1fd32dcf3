"""What the carrier has played, from its mark acknowledgements (pure bookkeeping, no I/O).

Every agent frame handed to the carrier is numbered. A mark sent after frame N is acknowledged once
the carrier has played up to N. At a barge-in the frames beyond the last acknowledged mark are the
ones the caller did not hear: the clear drops them from the carrier's buffer. Acknowledgements of
marks sent before a clear that arrive after it are not proof of play (carriers answer every pending
mark when they drop their buffer), so they are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MarkLedger:
    interval_frames: int  # a mark after this many frames of a turn
    handed: int = 0  # frames handed to the carrier so far
    played: int = 0  # frames the carrier reported played
    _pending: dict[str, int] = field(default_factory=dict)  # mark name -> frames handed before it
    _since_mark: int = 0
    _next_id: int = 0

    def frame(self) -> str | None:
        """One more frame handed to the carrier; the name of a mark to send after it, if one is due."""
        self.handed += 1
        self._since_mark += 1
        return self._mark() if self._since_mark >= self.interval_frames else None

    def silence(self) -> str | None:
        """The agent fell silent: a mark closes the audio sent since the last one (the end of a turn)."""
        return self._mark() if self._since_mark else None

    def acknowledged(self, name: str) -> bool:
        """The carrier played up to mark ``name``; False for a mark not pending (unknown, or cleared)."""
        upto = self._pending.pop(name, None)
        if upto is None:
            return False
        self.played = max(self.played, upto)
        return True

    def clear(self) -> int:
        """A barge-in clears the carrier's buffer: returns how many handed frames were not heard."""
        unheard = self.handed - self.played
        self._pending.clear()
        self._since_mark = 0
        self.handed = self.played
        return unheard

    @property
    def unacknowledged(self) -> int:
        return self.handed - self.played

    def _mark(self) -> str:
        self._next_id += 1
        name = f"vf-{self._next_id}"
        self._pending[name] = self.handed
        self._since_mark = 0
        return name
