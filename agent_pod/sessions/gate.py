"""The trust boundary of the session layer: credential, then tenant quota, then the directory.

- Create (session API, or a stream that starts a brand-new session): a credential with
  ``sessions:create``; the tenant's rate and concurrency quota; then placement.
- Resume (session API): a credential with ``sessions:resume`` of the session's own tenant, plus the
  session's resume token (the directory checks it).
- A stream for an existing session opens with the grant's credential (its resume token, or the
  one-time migration token); the session counts against its tenant while it is live here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import AuthSpec
from .auth import ANONYMOUS, Authenticator, Principal, refuse
from .directory import RESUMABLE_OUTCOMES, AdmissionError, Grant, SessionAllocator, new_session_id
from .quotas import QuotaStore

# Outcomes after which the call goes on elsewhere or may come back: its lease is kept until it runs out.
CONTINUING_OUTCOMES = RESUMABLE_OUTCOMES | {"migrated", "disconnected"}


@dataclass
class SessionGate:
    spec: AuthSpec
    auth: Authenticator
    quotas: QuotaStore

    async def create(
        self, credential: str | None, directory: SessionAllocator, metadata: dict[str, str]
    ) -> Grant:
        principal = await self.auth.authenticate(credential, "sessions:create")
        session_id = new_session_id()
        await self.quotas.acquire(principal.tenant, session_id, new=True, live=False)
        try:
            return await directory.create(metadata, session_id=session_id)
        except AdmissionError:
            await self.quotas.release(session_id, principal.tenant)
            raise

    async def resume(
        self, credential: str | None, directory: SessionAllocator, session_id: str, resume_token: str | None
    ) -> Grant:
        principal = await self.auth.authenticate(credential, "sessions:resume")
        tenant = await self._tenant_for(principal, session_id)
        grant = await directory.resume(session_id, resume_token)
        await self.quotas.acquire(tenant, session_id, new=False, live=False)
        return grant

    async def authorize_transfer(self, credential: str | None, session_id: str) -> Principal:
        """A transfer (session API): a credential with ``sessions:transfer`` of the session's own tenant."""
        principal = await self.auth.authenticate(credential, "sessions:transfer")
        await self._tenant_for(principal, session_id)
        return principal

    async def _tenant_for(self, principal: Principal, session_id: str) -> str:
        owner = await self.quotas.tenant_of(session_id)
        if owner is not None and principal is not ANONYMOUS and owner != principal.tenant:
            raise refuse("tenant", "the session belongs to another tenant")
        return owner or principal.tenant

    async def new_stream(self, credential: str | None) -> Principal:
        """A stream that starts a new session on this pod: the same credential a create needs."""
        return await self.auth.authenticate(credential, "sessions:create")

    async def stream_admitted(self, session_id: str, principal: Principal | None) -> None:
        """Count a stream admitted here against its tenant (``principal``: it started a new session).
        Raises AdmissionError(resource_exhausted); the caller then releases the session."""
        if principal is not None:
            await self.quotas.acquire(principal.tenant, session_id, new=True, live=True)
            return
        # Without keys or JWTs every caller is anonymous: no tenant to look up in Redis per admission.
        named_tenants = self.spec.api_keys_secret_ref is not None or self.spec.jwt is not None
        tenant = (await self.quotas.tenant_of(session_id) if named_tenants else None) or ANONYMOUS.tenant
        await self.quotas.acquire(tenant, session_id, new=False, live=True)

    async def stream_ended(self, session_id: str, outcome: str) -> None:
        if outcome in CONTINUING_OUTCOMES:
            self.quotas.forget(session_id)
        else:
            await self.quotas.release(session_id)

    async def start(self) -> None:
        await self.quotas.start()

    async def aclose(self) -> None:
        await self.quotas.aclose()
