"""Handing a live call to another VoiceAgent that shares this Redis, in Redis.

The target's keys carry another hash tag than ours, so no one script can touch both agents: the call
is placed on the target agent by the target's own PLACE script (its ring, bounded loads, capacity and
canary split), then marked ``moving`` there with a one-time token and the conversation it starts
with, exactly as a migration leaves a pin. The target pod's CLAIM admits the caller with that token;
our own pin stays ours until the call ends here ("migrated" deletes it).

``moving_from`` names ``<agent>/<pod>`` (pod names hold no ``/``): the target pod then knows the call
comes from another agent (it issues the caller a resume token of its own, and watches that pod's
liveness under the other agent's keys while it waits for the held input).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..conversation import Conversation
from .directory import MigrationTicket, PodIdentity, TransferRefused
from .keys import AgentKeys, agent_pod_name
from .local_state import LocalSessions
from .migration_store import HANDOFF_TTL_SECONDS
from .placement import is_fresh, ring_order
from .placement_store import LIST_ATTEMPTS, place_args
from .records import Handoff, PodRecord, decode_mapping
from .registry import PodRegistry
from .script_keys import place_keys
from .store import Store, StoreBusy, StoreDown, text
from .tokens import token_hash
from .tuning import ms

# KEYS[1] the target's pin, KEYS[2] its snapshot, KEYS[3] the session's tenant record there. ARGV: pod
# the call was placed on, handoff_hash, moving_from, frozen_ms, conversation JSON, snapshot_ttl_ms,
# pin_ttl_ms, tenant ('' when the call has none). -> 'moving' | 'gone' (the pin names another pod now)
MARK_MOVING = """
if redis.call('HGET', KEYS[1], 'pod') ~= ARGV[1] then
  return 'gone'
end
if ARGV[8] ~= '' then
  redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[7])
end
redis.call('HSET', KEYS[1], 'state', 'moving', 'moving_from', ARGV[3], 'handoff_hash', ARGV[2],
  'frozen_ms', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
return 'moving'
"""

# Take a transfer back: the caller did not arrive (``moving``) or said it stayed (force).
# KEYS[1] the target's pin, KEYS[2] its snapshot, KEYS[3] the load of the pod the call was placed on.
# ARGV: pod, force, session. -> 'aborted' | 'claimed' (the target serves the call)
#  | 'gone'
ABORT = """
local pin = redis.call('HMGET', KEYS[1], 'pod', 'state')
if pin[1] ~= ARGV[1] then
  return 'gone'
end
if pin[2] ~= 'moving' and ARGV[2] ~= '1' then
  return 'claimed'
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return 'aborted'
"""


class CallTransfers:
    def __init__(
        self, store: Store, local: LocalSessions, registry: PodRegistry, identity: PodIdentity
    ) -> None:
        self.store = store
        self.local = local
        self.registry = registry
        self.identity = identity
        redis = store.redis
        self._mark: Any = redis.register_script(MARK_MOVING)
        self._abort: Any = redis.register_script(ABORT)

    def keys_of(self, agent: str) -> AgentKeys:
        return AgentKeys(self.store.keys.namespace, agent)

    async def ready_pods(self, agent: str) -> list[PodRecord]:
        """The target agent's ready pods with a fresh heartbeat and room. Raises TransferRefused when the
        agent has no pod registered in this Redis at all, or none that can take a call."""
        store, keys = self.store, self.keys_of(agent)
        try:
            store.require()
            names = sorted(text(n) for n in await store.io(store.redis.smembers(keys.pods)))
            if not names:
                raise TransferRefused(
                    "unknown_target",
                    f"no pod of VoiceAgent {agent!r} is registered in this session store: it does not "
                    "exist in this namespace, or it uses another Redis",
                )
            async with store.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(keys.pod(name))
                pipe.time()
                *raws, now = await store.io(pipe.execute())
        except StoreDown:
            raise TransferRefused("store_down", "the session store is unreachable") from None
        except StoreBusy:
            raise TransferRefused("store_down", "the session store is busy; retry shortly") from None
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        stale = ms(store.tuning.stale_seconds)
        records = [PodRecord.from_mapping(decode_mapping(raw)) for raw in raws if raw]
        ready = [
            r
            for r in records
            if r.state == "ready" and is_fresh(r.heartbeat_ms, now_ms, stale) and r.live < r.capacity
        ]
        if not ready:
            raise TransferRefused("no_ready_pod", f"VoiceAgent {agent!r} has no ready pod with room")
        return ready

    async def owner(self, session_id: str) -> PodRecord | None:
        """The live pod that serves the call (None: unknown, or Redis is down)."""
        store = self.store
        try:
            store.require()
            pod = await store.io(store.redis.hget(store.keys.pin(session_id), "pod"))
            return await self.registry.fresh_record(text(pod), ("ready", "draining")) if pod else None
        except (StoreDown, StoreBusy):
            return None

    async def begin(
        self, session_id: str, conversation: Conversation, agent: str, follow_seconds: float
    ) -> MigrationTicket:
        """Place the call on a pod of ``agent`` and mark it moving there, with the conversation it starts
        with and a one-time token for the caller. Raises TransferRefused."""
        owned = self.local.get(session_id)
        if owned is None or owned.state != "live":
            raise TransferRefused("not_owner", "the call is not live on this pod")
        store, keys, tuning = self.store, self.keys_of(agent), self.store.tuning
        token = secrets.token_urlsafe(24)
        try:
            store.require()
            # The call stays its tenant's at the target (its quota counts it there).
            tenant = await store.io(store.redis.get(store.keys.session_tenant(session_id)))
            # The target's slot is held until the caller has had time to follow.
            lease = max(tuning.reservation_seconds, follow_seconds + tuning.stale_seconds)
            result = await self._place(session_id, keys, owned.token_hash, lease)
            status = text(result[0])
            if status == "moved":
                raise TransferRefused("already_there", f"the call already has a pin at VoiceAgent {agent!r}")
            if status != "placed":
                raise TransferRefused("no_ready_pod", f"no pod of VoiceAgent {agent!r} has room")
            pod = text(result[1])
            marked = await store.io(
                self._mark(
                    keys=[keys.pin(session_id), keys.snapshot(session_id), keys.session_tenant(session_id)],
                    args=[
                        pod,
                        token_hash(token),
                        agent_pod_name(self.store.keys.agent, self.identity.name),
                        int(time.time() * 1000),
                        conversation.model_dump_json(by_alias=True),
                        ms(tuning.snapshot_ttl_seconds),
                        ms(tuning.pin_ttl_seconds),
                        text(tenant) if tenant else "",
                    ],
                )
            )
        except StoreDown:
            raise TransferRefused("store_down", "the session store is unreachable") from None
        except StoreBusy:
            raise TransferRefused("store_down", "the session store is busy; retry shortly") from None
        if text(marked) != "moving":
            raise TransferRefused("no_ready_pod", f"the pod of {agent!r} chosen for the call lost it")
        http = text(result[5])
        return MigrationTicket(
            pod=pod,
            grpc_address=text(result[4]),
            webrtc_url=PodIdentity(name=pod, http_url=http).webrtc_url(session_id),
            token=token,
        )

    async def _place(self, session_id: str, keys: AgentKeys, th: str, lease_seconds: float) -> list[Any]:
        """The target agent's PLACE script, as its own pods run it for a new session."""
        store, tuning = self.store, self.store.tuning
        for _ in range(LIST_ATTEMPTS):  # a pod registered meanwhile: read the list again
            names = sorted(text(n) for n in await store.io(store.redis.smembers(keys.pods)))
            order = ring_order(session_id, names)
            args = place_args(session_id, tuning, lease_seconds, th, "", order)
            result: list[Any] = await store.io(
                store.scripts.place(keys=place_keys(keys, session_id, "", order), args=args)
            )
            if text(result[0]) != "stale_list":
                return result
        return ["full"]

    async def abort(self, session_id: str, agent: str, pod: str, force: bool) -> bool:
        """Take the call back from ``pod`` of ``agent``; False when that pod serves it already. While Redis
        is down the call stays here (the target's reservation runs out on its own)."""
        keys = self.keys_of(agent)
        try:
            self.store.require()
            result = await self.store.io(
                self._abort(
                    keys=[keys.pin(session_id), keys.snapshot(session_id), keys.load(pod)],
                    args=[pod, "1" if force else "0", session_id],
                )
            )
        except (StoreDown, StoreBusy):
            return True
        return text(result) != "claimed"

    async def push_handoff(self, session_id: str, agent: str, handoff: Handoff) -> None:
        """The caller input held here since the freeze, for the target pod (best effort)."""
        store = self.store
        key = self.keys_of(agent).handoff(session_id)
        try:
            store.require()
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, handoff.model_dump_json())
                pipe.pexpire(key, ms(HANDOFF_TTL_SECONDS))
                await store.io(pipe.execute())
        except (StoreDown, StoreBusy):
            pass
