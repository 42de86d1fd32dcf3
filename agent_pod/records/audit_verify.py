"""Verification of a call's audit log: the chain, the signed head, the recording. Pure functions over
bytes; the CLI reads the files.

The first problem found is reported, naming the seq it concerns: an entry changed in place breaks the
``prev`` of the entry after it (or, for the last entry, the head's hash); a removed or reordered entry
breaks the seq sequence; a cut-off tail leaves the log shorter than its signed head.
"""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from .audit_entries import GENESIS, CallStarted, Entry, EntryLine, RecordingEntry, canonical, entry_hash
from .audit_keys import Head, signature_ok


class AuditProblem(Exception):
    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class Verified(BaseModel):
    log: str
    entries: list[Entry]
    key_id: str
    unsigned_tail: int = 0  # lines after the signed head, ignored (allow_unsigned_tail)

    @property
    def recording(self) -> RecordingEntry | None:
        found = [e for e in self.entries if isinstance(e, RecordingEntry)]
        return found[-1] if found else None


def parse_entries(data: bytes) -> list[Entry]:
    """The entries of a log, checking the chain (seq contiguous from 0, every prev the hash of the line
    before, canonical JSON); raises AuditProblem at the first break."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        raise AuditProblem(f"the log ends in a partial line after seq {len(lines) - 2}", len(lines) - 1)
    entries: list[Entry] = []
    prev = GENESIS
    seqs = [_seq_of(line) for line in lines]
    for expected, line in enumerate(lines):
        try:
            raw = json.loads(line)
        except ValueError:
            raise AuditProblem(f"seq {expected}: the entry is not valid JSON (altered)", expected) from None
        seq = raw.get("seq") if isinstance(raw, dict) else None
        if seq != expected:
            if isinstance(seq, int) and seq > expected and expected not in seqs:
                raise AuditProblem(
                    f"seq {expected}: missing (the entry after seq {expected - 1} is seq {seq}): removed",
                    expected,
                )
            raise AuditProblem(f"seq {expected}: out of order (found seq {seq} in its place)", expected)
        if raw.get("prev") != prev:
            raise AuditProblem(
                f"seq {expected - 1}: altered (its hash does not match the prev of seq {expected})",
                expected - 1,
            )
        if canonical(raw) != line:
            raise AuditProblem(f"seq {expected}: not canonical JSON (altered)", expected)
        try:
            entries.append(EntryLine.model_validate({"entry": raw}).entry)
        except ValidationError as exc:
            raise AuditProblem(
                f"seq {expected}: not a valid entry: {exc.errors()[0]['msg']}", expected
            ) from None
        prev = entry_hash(line)
    if not entries:
        raise AuditProblem("the log is empty", 0)
    return entries


def _seq_of(line: bytes) -> object:
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    return raw.get("seq") if isinstance(raw, dict) else None


def verify_log(
    log: str,
    data: bytes,
    head_bytes: bytes | None,
    keys: dict[str, Ed25519PublicKey],
    allow_unsigned_tail: bool = False,
) -> Verified:
    """The entries of a verified log, or AuditProblem naming the first bad seq. ``allow_unsigned_tail``:
    what follows the signed head (a pod killed between writing an entry and its head, or mid-write)
    is left out and counted rather than refused; it is unproven either way."""
    torn = 0
    if allow_unsigned_tail and data and not data.endswith(b"\n"):
        data, torn = data[: data.rfind(b"\n") + 1], 1
    entries = parse_entries(data)
    first = entries[0]
    if not isinstance(first, CallStarted) or first.log != log:
        raise AuditProblem(f"seq 0: not the call_started entry of log {log}", 0)
    if head_bytes is None:
        raise AuditProblem(f"the log has no signed head (entries up to seq {len(entries) - 1} unproven)")
    try:
        head = Head.model_validate_json(head_bytes)
    except ValidationError:
        raise AuditProblem("the head is not a valid head (altered)") from None
    if head.log != log:
        raise AuditProblem(f"the head belongs to log {head.log}, not {log}")
    why = signature_ok(head, keys)
    if why is not None:
        raise AuditProblem(why)
    last = len(entries) - 1
    if head.seq > last:
        raise AuditProblem(
            f"seq {last + 1}: missing (the log ends at seq {last}; the signed head covers up to seq "
            f"{head.seq}): truncated",
            last + 1,
        )
    if head.seq < last and not allow_unsigned_tail:
        raise AuditProblem(
            f"seq {head.seq + 1}: not covered by the signed head (it ends at seq {head.seq}): appended",
            head.seq + 1,
        )
    if entry_hash(data.split(b"\n")[head.seq]) != head.hash:
        raise AuditProblem(f"seq {head.seq}: altered (its hash does not match the signed head)", head.seq)
    tail = last - head.seq + torn
    return Verified(log=log, entries=entries[: head.seq + 1], key_id=head.key_id, unsigned_tail=tail)


def check_recording(entry: RecordingEntry, audio: bytes) -> None:
    digest = hashlib.sha256(audio).hexdigest()
    if digest != entry.sha256 or len(audio) != entry.bytes:
        raise AuditProblem(
            f"seq {entry.seq}: the recording differs from its entry (sha256 {digest}, {len(audio)} bytes; "
            f"the log says {entry.sha256}, {entry.bytes} bytes)",
            entry.seq,
        )
