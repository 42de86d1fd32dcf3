"""The pod's audit logs: one CallAudit per live call leg, fed from its session (docs/audit.md)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import AgentConfig
from .audit import CallAudit
from .audit_keys import Signer
from .audit_store import AuditStore, DirectoryAuditStore

if TYPE_CHECKING:
    from ..transports.hub import LiveSession

log = logging.getLogger(__name__)


class CallAudits:
    def __init__(self, config: AgentConfig, store: AuditStore, signer: Signer | None, pod_name: str) -> None:
        self.config = config
        self.store = store
        self.signer = signer
        self.pod_name = pod_name

    @classmethod
    def build(
        cls, config: AgentConfig, directory: Path | None, key_file: Path | None, pod_name: str
    ) -> CallAudits | None:
        """The pod's audit logs, or None when audit is off or has nowhere to go (logged)."""
        if not config.audit.enabled:
            return None
        if directory is None:
            log.error("audit is enabled but VOICEFLEET_AUDIT_DIR is not set: calls are not audited")
            return None
        signer = Signer.from_file(key_file) if key_file is not None else None
        if signer is None:
            log.warning("audit logs are not signed: no VOICEFLEET_AUDIT_KEY_FILE (raw text is not kept)")
        return cls(config, DirectoryAuditStore(directory), signer, pod_name)

    async def sweep(self, now: datetime | None = None) -> list[str]:
        """Delete the calls whose logs are older than audit.retentionDays (unset: none); their ids."""
        days = self.config.audit.retention_days
        if days is None:
            return []
        return await asyncio.to_thread(self.store.expire, now or datetime.now(UTC), days)

    def attach(self, live: LiveSession) -> CallAudit:
        """Open the call leg's log with its call_started entry, and log each of the session's turns."""
        session = live.session
        leg = f"{int(time.time() * 1000):013d}-{re.sub(r'[^A-Za-z0-9._-]', '-', self.pod_name) or 'pod'}"
        audit = CallAudit(self.store, self.config.audit, self.signer, live.id, leg)
        audit.started(
            agent=self.config.agent,
            namespace=self.config.namespace,
            prompt_id=self.config.prompt_id,
            prompt_version=self.config.prompt_version,
            pod=self.pod_name,
            transport=live.transport,
            resumed=live.resumed,
            moved_from=live.moved_from,
        )
        session.on_turn_record = lambda record: audit.turn(record, session.tool_audit, session.conversation)
        return audit

    @staticmethod
    async def finish(audit: CallAudit, live: LiveSession, reason: str) -> None:
        """The recording's entry (its location and hash, once the session finished it), the call_ended
        entry, then the bounded flush of the log."""
        info = live.session.recording_info
        if info is not None:
            audit.recording(location=info.location, sha256=info.sha256, size=info.bytes)
        audit.ended(reason, live.session.tool_audit, live.session.conversation)
        await audit.close()
