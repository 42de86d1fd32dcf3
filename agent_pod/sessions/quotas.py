"""Per-tenant quotas, fleet-wide: how many sessions a tenant holds at once, and how fast it starts them.

Each tenant has a lease set in Redis (session id -> lease deadline); a session counts while its lease
is unexpired. Creating a session takes a lease for the reservation window and a token from the
tenant's bucket (refilled at ``sessionsPerMinute``, up to ``burst``); the pod that serves the call
renews the lease while it lives; the end of a call gives the lease back at once. A call cut off
from its caller keeps its lease only until it runs out (at most ``LEASE_SECONDS``): a resume takes
it again. One Lua script checks and takes, so pods acting at once never overshoot a quota.

Redis down: quotas fail open (the pod's own capacity still bounds it): a call is never refused
because the quota store cannot be reached. Without Redis (a single pod), the same rules run in memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Protocol

from ..config import ANONYMOUS_TENANT, AuthSpec, TenantQuota
from . import session_metrics
from .directory import AdmissionError
from .keys import AgentKeys
from .redis_client import AnyRedis
from .store import STORE_DOWN

log = logging.getLogger("voicefleet.quotas")

LEASE_SECONDS = 30.0  # a live call renews it every RENEW_SECONDS
RENEW_SECONDS = 10.0

# KEYS: lease set, bucket, session->tenant. ARGV: session, lease_ms, max_concurrent, per_minute, burst,
# tenant, owner_ttl_ms, new ('1': a new session takes a bucket token).
# -> {'ok', 0} | {'concurrency', ms until the first lease runs out} | {'rate', ms until a token}
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sid, lease_ms = ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], sid) then
  redis.call('ZADD', KEYS[1], now + lease_ms, sid)
  return {'ok', 0}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'concurrency', tonumber(first[2]) - now}
end
if ARGV[8] == '1' then
  local rate, burst = tonumber(ARGV[4]) / 60000.0, tonumber(ARGV[5])
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'ms')
  local tokens = tonumber(b[1]) or burst
  local last = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
  if tokens < 1 then
    return {'rate', math.ceil((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'ms', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate) + 60000)
end
redis.call('ZADD', KEYS[1], now + lease_ms, sid)
redis.call('PEXPIRE', KEYS[1], lease_ms * 4)
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
return {'ok', 0}
"""

# KEYS: lease set. ARGV: lease_ms, sessions... Renews the leases this pod's live calls hold.
RENEW = """
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 4)
return 0
"""


class QuotaStore(Protocol):
    async def acquire(self, tenant: str, session_id: str, new: bool, live: bool) -> None:
        """Count ``session_id`` against ``tenant``, or raise AdmissionError(resource_exhausted). ``new``:
        a new session (takes a rate token); ``live``: the call runs on this pod (its lease is renewed)."""
        ...

    async def tenant_of(self, session_id: str) -> str | None: ...

    async def release(self, session_id: str, tenant: str | None = None) -> None:
        """The call ended for good (or its create failed): its lease is given back."""
        ...

    def forget(self, session_id: str) -> None:
        """The call left this pod but may go on (resume, migration): stop renewing, keep the lease."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def refusal(spec: AuthSpec, tenant: str, quota: TenantQuota, limit: str, wait_ms: float) -> AdmissionError:
    label = tenant if tenant in spec.tenant_quotas or tenant == ANONYMOUS_TENANT else "other"
    session_metrics.QUOTA_REFUSALS.labels(label, limit).inc()
    if limit == "concurrency":
        message = f"tenant {tenant} holds its {quota.max_concurrent_sessions} concurrent sessions"
    else:
        message = f"tenant {tenant} starts sessions faster than {quota.sessions_per_minute} per minute"
    return AdmissionError("resource_exhausted", message, retry_after_seconds=max(1.0, wait_ms / 1000))


def by_tenant(live: dict[str, str]) -> dict[str, list[str]]:
    """This pod's live sessions (session -> tenant) grouped by tenant."""
    out: dict[str, list[str]] = {}
    for session_id, tenant in live.items():
        out.setdefault(tenant, []).append(session_id)
    return out


class RedisQuotas:
    def __init__(
        self, redis_client: AnyRedis, keys: AgentKeys, spec: AuthSpec, owner_ttl_seconds: float
    ) -> None:
        self.redis = redis_client
        self.keys = keys
        self.spec = spec
        self.owner_ttl_ms = int(owner_ttl_seconds * 1000)
        self._acquire: Any = redis_client.register_script(ACQUIRE)
        self._renew: Any = redis_client.register_script(RENEW)
        self._live: dict[str, str] = {}  # sessions live on this pod -> tenant (their leases are renewed)
        self._task: asyncio.Task[None] | None = None

    async def acquire(self, tenant: str, session_id: str, new: bool, live: bool) -> None:
        quota = self.spec.quota(tenant)
        if quota is None:
            return
        keys = [
            self.keys.tenant_leases(tenant),
            self.keys.tenant_bucket(tenant),
            self.keys.session_tenant(session_id),
        ]
        args = [
            session_id,
            int(LEASE_SECONDS * 1000),
            quota.max_concurrent_sessions,
            quota.sessions_per_minute,
            quota.burst,
            tenant,
            self.owner_ttl_ms,
            "1" if new else "0",
        ]
        try:
            verdict, wait_ms = await self._acquire(keys=keys, args=args)
        except STORE_DOWN as exc:
            session_metrics.REDIS_ERRORS.inc()
            log.warning("quota store unreachable; admitting without the tenant quota: %s", exc)
            return
        if verdict != "ok":
            raise refusal(self.spec, tenant, quota, str(verdict), float(wait_ms))
        if live:
            self._live[session_id] = tenant

    async def tenant_of(self, session_id: str) -> str | None:
        if session_id in self._live:
            return self._live[session_id]
        try:
            tenant = await self.redis.get(self.keys.session_tenant(session_id))
        except STORE_DOWN:
            session_metrics.REDIS_ERRORS.inc()
            return None
        return str(tenant) if tenant else None

    async def release(self, session_id: str, tenant: str | None = None) -> None:
        tenant = self._live.pop(session_id, tenant)
        if tenant is None:
            return
        try:
            await self.redis.zrem(self.keys.tenant_leases(tenant), session_id)
        except STORE_DOWN:
            session_metrics.REDIS_ERRORS.inc()  # the lease runs out on its own

    def forget(self, session_id: str) -> None:
        """Stop renewing a lease without giving it back (the call may be resumed or moved on)."""
        self._live.pop(session_id, None)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for tenant, sessions in by_tenant(self._live).items():
                try:
                    await self._renew(
                        keys=[self.keys.tenant_leases(tenant)], args=[int(LEASE_SECONDS * 1000), *sessions]
                    )
                except STORE_DOWN:
                    session_metrics.REDIS_ERRORS.inc()
                    break

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_loop(), name="quota-renew")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LocalQuotas:
    """The same rules for a pod that serves alone (no Redis)."""

    def __init__(self, spec: AuthSpec) -> None:
        self.spec = spec
        self._live: dict[str, str] = {}  # sessions live on this pod -> tenant (their leases are renewed)
        self._leases: dict[str, dict[str, float]] = {}  # tenant -> session -> lease deadline (monotonic)
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._tenants: dict[str, str] = {}

    async def acquire(self, tenant: str, session_id: str, new: bool, live: bool) -> None:
        now = time.monotonic()
        quota = self.spec.quota(tenant)
        if quota is None:
            return
        leases = self._leases.setdefault(tenant, {})
        for sid in [s for s, deadline in leases.items() if deadline <= now and s not in self._live]:
            del leases[sid]
        if session_id not in leases:
            if len(leases) >= quota.max_concurrent_sessions:
                wait = min(leases.values()) - now if leases else 1.0
                raise refusal(self.spec, tenant, quota, "concurrency", wait * 1000)
            if new:
                rate = quota.sessions_per_minute / 60.0
                tokens, at = self._buckets.get(tenant, (float(quota.burst), now))
                tokens = min(float(quota.burst), tokens + (now - at) * rate)
                if tokens < 1:
                    raise refusal(self.spec, tenant, quota, "rate", math.ceil((1 - tokens) / rate * 1000))
                self._buckets[tenant] = (tokens - 1, now)
        leases[session_id] = now + LEASE_SECONDS
        self._tenants[session_id] = tenant
        if live:
            self._live[session_id] = tenant

    async def tenant_of(self, session_id: str) -> str | None:
        return self._tenants.get(session_id)

    async def release(self, session_id: str, tenant: str | None = None) -> None:
        tenant = self._live.pop(session_id, tenant)
        if tenant is not None:
            self._leases.get(tenant, {}).pop(session_id, None)

    def forget(self, session_id: str) -> None:
        tenant = self._live.pop(session_id, None)
        if tenant is not None and session_id in self._leases.get(tenant, {}):
            self._leases[tenant][session_id] = time.monotonic() + LEASE_SECONDS

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
