"""The audit log of one call leg: entries chained and signed on the event loop, written off it.

Appending is synchronous and cheap (canonical JSON, a SHA-256, an Ed25519 signature of the new head);
one writer task per log hands the bytes to the store in a worker thread, the entries first, then the
head, so the stored head never covers entries that are not stored. A failing write is logged, counted
and retried with backoff until the log is closed; the call never waits on storage, except for a
bounded flush at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..config import AuditSpec
from ..conversation import Conversation
from ..pipeline.compliance import TurnRecord
from ..tools.audit import ToolAuditRecord
from . import audit_metrics
from .audit_entries import (
    GENESIS,
    CallEnded,
    CallStarted,
    RecordingEntry,
    ToolCallEntry,
    TurnEntry,
    _Entry,
    canonical,
    entry_hash,
)
from .audit_keys import Head, Signer
from .audit_store import AuditStore, check_name
from .backoff import backoff
from .redact import redact, redact_json_text

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 5.0


class CallAudit:
    def __init__(
        self,
        store: AuditStore,
        policy: AuditSpec,
        signer: Signer | None,
        call_id: str,
        leg: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.signer = signer if policy.enabled else None
        self.call_id = check_name(call_id)
        self.log = f"{call_id}/{check_name(leg)}"
        self._clock = clock
        self._seq = 0
        self._prev = GENESIS
        self._pending: list[tuple[str, bytes]] = []  # (type, line) not yet stored
        self._offset = 0  # bytes of the entries stored
        self._head: bytes | None = None  # the newest head, not yet stored
        self._wake = asyncio.Event()
        self._closed = False
        self._logged_tools: set[str] = set()
        self._turns = 0
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name=f"audit-{self.log}")

    # ------------------------------------------------------------------ entries

    def started(
        self,
        *,
        agent: str,
        namespace: str,
        prompt_id: str,
        prompt_version: str,
        pod: str,
        transport: str,
        resumed: bool = False,
        moved_from: str | None = None,
    ) -> None:
        self._append(
            CallStarted,
            call_id=self.call_id,
            log=self.log,
            agent=agent,
            namespace=namespace,
            prompt_id=prompt_id,
            prompt_version=prompt_version,
            pod=pod,
            transport=transport,
            resumed=resumed,
            moved_from=moved_from,
            redact=sorted(self.policy.redact),
            raw_text_kept=self._keeps_raw,
            key_id=self.signer.key_id if self.signer else "",
        )

    def turn(
        self, record: TurnRecord, tool_records: Sequence[ToolAuditRecord], conversation: Conversation
    ) -> None:
        """One agent turn, with the tool calls it made that are not logged yet."""
        self._turns += 1
        texts = {"sent_to_tts": record.sent_to_tts, "played_text": record.played_text}
        if record.retranscript is not None:
            texts["retranscript"] = record.retranscript
        counts: dict[str, int] = {}
        stored = {k: self._redact(v, counts) for k, v in texts.items()}
        mine = [r for r in tool_records if r.turn_id == record.turn_id]
        tools, raw_args = self._tools(mine, conversation, counts)
        raw = None
        if self._keeps_raw and self.signer is not None:
            plain = canonical({**texts, "tools": raw_args})
            raw = self.signer.seal(plain, f"{self.log}/{record.turn_id}".encode())
        node = conversation.flow.node if conversation.flow else ""
        self._append(
            TurnEntry,
            turn_id=record.turn_id,
            node=node,
            sent_to_tts=stored["sent_to_tts"],
            played_text=stored["played_text"],
            played_ms=record.played_ms,
            interrupted=record.interrupted,
            retranscript=stored.get("retranscript"),
            wer=record.divergence,
            flagged=record.flagged,
            check=record.method,
            divergent_words=record.divergent_words,
            retranscription=record.audit,
            audio_start_ms=record.audio_start_ms,
            audio_end_ms=record.audio_end_ms,
            tools=tools,
            knowledge_docs=record.knowledge_docs,
            redactions=counts,
            raw=raw,
        )

    def recording(self, *, location: str, sha256: str, size: int) -> None:
        """The finished recording (whoever holds it appends this, before the call's log is closed)."""
        self._append(RecordingEntry, location=location, sha256=sha256, bytes=size)

    def ended(self, reason: str, tool_records: Sequence[ToolAuditRecord], conversation: Conversation) -> None:
        tools, _ = self._tools(list(tool_records), conversation, {})
        self._append(CallEnded, reason=reason, turns=self._turns, tools=tools)

    # ------------------------------------------------------------------ chain

    @property
    def _keeps_raw(self) -> bool:
        return self.policy.keep_raw_text and self.signer is not None

    def _redact(self, text: str, counts: dict[str, int]) -> str:
        r = redact(text, self.policy.redact)
        for kind, n in r.counts.items():
            counts[kind] = counts.get(kind, 0) + n
            audit_metrics.AUDIT_REDACTIONS_TOTAL.labels(kind).inc(n)
        return r.text

    def _tools(
        self, records: list[ToolAuditRecord], conversation: Conversation, counts: dict[str, int]
    ) -> tuple[list[ToolCallEntry], list[dict[str, str]]]:
        """Entries of the tool calls in ``records`` not logged yet, with their redacted arguments (from
        the conversation's assistant messages), and the raw arguments."""
        arguments = {c.id: c.arguments for m in conversation.messages for c in m.tool_calls}
        entries, raw = [], []
        for r in records:
            if r.call_id in self._logged_tools:
                continue
            self._logged_tools.add(r.call_id)
            args = arguments.get(r.call_id, "")
            redacted = redact_json_text(args, self.policy.redact) if args else None
            if redacted is not None:
                for kind, n in redacted.counts.items():
                    counts[kind] = counts.get(kind, 0) + n
                    audit_metrics.AUDIT_REDACTIONS_TOTAL.labels(kind).inc(n)
            entries.append(
                ToolCallEntry(
                    call_id=r.call_id,
                    name=r.tool,
                    arguments=redacted.text if redacted else "",
                    outcome=r.outcome,
                    attempts=r.attempts,
                    latency_ms=r.latency_ms,
                    error=self._redact(r.error, counts),
                )
            )
            raw.append({"call_id": r.call_id, "arguments": args})
        return entries, raw

    def _append(self, kind: type[_Entry], **fields: Any) -> None:
        if self._closed:
            audit_metrics.AUDIT_ENTRIES_DROPPED_TOTAL.inc()
            log.warning("audit entry after the log was closed, dropped", extra={"audit_log": self.log})
            return
        entry = kind(seq=self._seq, prev=self._prev, at=round(self._clock(), 3), **fields)
        line = canonical(entry.model_dump(mode="json"))
        digest = entry_hash(line)
        self._pending.append((entry.type, line + b"\n"))
        if self.signer is not None:
            head = Head(
                log=self.log, seq=self._seq, hash=digest, key_id=self.signer.key_id, signed_at=entry.at
            )
            self._head = canonical(self.signer.sign(head).model_dump()) + b"\n"
        self._seq += 1
        self._prev = digest
        self._wake.set()

    # ------------------------------------------------------------------ storage

    async def _write_loop(self) -> None:
        failures = 0  # in a row
        while True:
            if not self._pending and self._head is None:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, head = list(self._pending), self._head
            data = b"".join(line for _, line in batch)
            try:
                await asyncio.to_thread(self._store, data, head)
            except Exception:
                audit_metrics.AUDIT_WRITE_FAILURES_TOTAL.inc()
                log.exception("audit write failed; retrying", extra={"audit_log": self.log})
                failures += 1
                await asyncio.sleep(backoff(failures, RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS))
                continue
            failures = 0
            del self._pending[: len(batch)]
            self._offset += len(data)
            if self._head is head:
                self._head = None
            for kind, _ in batch:
                audit_metrics.AUDIT_ENTRIES_TOTAL.labels(kind).inc()

    def _store(self, data: bytes, head: bytes | None) -> None:
        if data:
            self.store.write_entries(self.log, self._offset, data)
        if head is not None:
            self.store.write_head(self.log, head)

    async def close(self, within_seconds: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """No more entries; wait (bounded) until the stored log is complete. False: some never made it."""
        self._closed = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), within_seconds)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            audit_metrics.AUDIT_ENTRIES_DROPPED_TOTAL.inc(len(self._pending))
            log.error(
                "audit log closed with %d entries unwritten",
                len(self._pending),
                extra={"audit_log": self.log},
            )
            return False
        return True
