"""Keypad input collection: digits gather into one caller input, as telephony systems do it.

Digits collect until the terminator (not part of the input; pressed alone it is the input), until
``maxDigits`` are in, or until no digit came for ``interDigitTimeoutSeconds`` (Twilio's <Gather>
finishOnKey / numDigits / timeout). Pure: the session passes the clock in and runs the timer.
"""

from __future__ import annotations

from ..config import DtmfSpec

# The keypad: what a phone call may send as DTMF.
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class DtmfCollector:
    def __init__(self, spec: DtmfSpec) -> None:
        self.spec = spec
        self.digits = ""
        self.deadline: float | None = None  # the inter-digit timeout of the digits collected

    @property
    def collecting(self) -> bool:
        return bool(self.digits)

    def press(self, digit: str, now: float) -> str | None:
        """Take one digit; the caller's input when it completes one, else None."""
        if self.spec.terminator and digit == self.spec.terminator:
            return self._take() or digit
        self.digits += digit
        if len(self.digits) >= self.spec.max_digits:
            return self._take()
        self.deadline = now + self.spec.inter_digit_timeout_seconds
        return None

    def expire(self, now: float) -> str | None:
        """The input collected so far when its inter-digit timeout has passed, else None."""
        if self.deadline is None or now < self.deadline:
            return None
        return self._take()

    def _take(self) -> str:
        digits, self.digits, self.deadline = self.digits, "", None
        return digits
