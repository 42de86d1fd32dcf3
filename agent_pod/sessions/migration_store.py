"""Moving a live call to another pod, in Redis: the MIGRATE step (state and pin move together, with a
one-time token for the caller), taking a call back when its caller did not follow, and the handoff
of caller input the old pod held during the switch."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from pydantic import ValidationError

from ..conversation import Conversation
from .directory import MigrationRefused, MigrationTicket, PodIdentity
from .keys import AgentKeys, source_of
from .local_state import LocalSessions
from .placement_store import LIST_ATTEMPTS
from .records import Handoff
from .registry import PodRegistry
from .script_keys import abort_keys, migrate_keys
from .store import Store, StoreBusy, StoreDown, text
from .tokens import token_hash
from .tuning import ms

log = logging.getLogger("voicefleet.sessions")
HANDOFF_TTL_SECONDS = 60.0
BLPOP_STEP_SECONDS = 0.5


class CallMoves:
    def __init__(
        self, store: Store, local: LocalSessions, registry: PodRegistry, identity: PodIdentity
    ) -> None:
        self.store = store
        self.local = local
        self.registry = registry
        self.identity = identity

    async def begin(
        self,
        session_id: str,
        conversation: Conversation,
        *,
        cross_revision: bool,
        exclude: set[str],
        follow_seconds: float,
    ) -> MigrationTicket:
        """Write the call's state and move its pin to another pod in one step, with a one-time token for
        the caller. Raises MigrationRefused (no_target, store_down, not_owner)."""
        owned = self.local.get(session_id)
        if owned is None or owned.state != "live":
            raise MigrationRefused("not_owner")
        token = secrets.token_urlsafe(24)
        frozen_ms = int(time.time() * 1000)
        has_turns = bool(conversation.messages)
        store, keys, tuning, me = self.store, self.store.keys, self.store.tuning, self.identity.name
        names = self.registry.pod_names
        try:
            store.require()
            for _ in range(LIST_ATTEMPTS):
                if not names:
                    names = sorted(text(n) for n in await store.io(store.redis.smembers(keys.pods)))
                candidates = [n for n in names if n != me and n not in exclude]
                result = await store.io(
                    store.scripts.migrate(
                        keys=migrate_keys(keys, session_id, candidates),
                        args=[
                            session_id,
                            me,
                            ms(tuning.stale_seconds),
                            ms(follow_seconds + tuning.stale_seconds),
                            ms(tuning.pin_ttl_seconds),
                            token_hash(token),
                            self.identity.revision,
                            "1" if cross_revision else "0",
                            conversation.model_dump_json(by_alias=True) if has_turns else "",
                            ms(tuning.snapshot_ttl_seconds),
                            frozen_ms,
                            len(candidates),
                            *candidates,
                            *sorted(exclude),
                        ],
                    )
                )
                if text(result[0]) != "stale_list":
                    break
                names = []  # a pod registered since the list was read: read it again
        except StoreDown:
            raise MigrationRefused("store_down") from None
        except StoreBusy:
            raise MigrationRefused("store_busy") from None
        status = text(result[0])
        if status == "stale_list":
            raise MigrationRefused("no_target")
        if status != "moving":
            raise MigrationRefused(status)
        if has_turns:
            owned.conversation = conversation
            owned.written = owned.version
            self.local.dirty.pop(session_id, None)
            self.local.report_depth()
        owned.state = "moving"
        pod, grpc, http = text(result[1]), text(result[2]), text(result[3])
        return MigrationTicket(
            pod=pod,
            grpc_address=grpc,
            webrtc_url=PodIdentity(name=pod, http_url=http).webrtc_url(session_id),
            revision=text(result[4]),
            token=token,
        )

    async def abort(self, session_id: str, target: str, force: bool = False) -> bool:
        """Take back a call whose caller did not follow; False when ``target`` (or another pod) serves it
        already (``force``: the caller said it stayed, so take it back from the target anyway). While
        Redis is down the call is kept here and the heartbeat takes the pin back later."""
        owned = self.local.get(session_id)
        if owned is None:
            return False
        store, keys, tuning = self.store, self.store.keys, self.store.tuning
        try:
            store.require()
            result = await store.io(
                store.scripts.abort_migration(
                    keys=abort_keys(keys, session_id, self.identity.name, target),
                    args=[
                        session_id,
                        self.identity.name,
                        ms(tuning.stale_seconds),
                        ms(tuning.stale_seconds),
                        self.identity.revision,
                        owned.prompt_id,
                        "1" if force else "0",
                        target,
                    ],
                )
            )
        except (StoreDown, StoreBusy):
            owned.state = "live"
            return True
        if text(result[0]) != "reclaimed":
            return False
        owned.state = "live"
        return True

    async def push_handoff(self, session_id: str, handoff: Handoff) -> None:
        """Give the new pod the caller input held here since the call was frozen (best effort)."""
        store = self.store
        key = store.keys.handoff(session_id)
        try:
            store.require()
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, handoff.model_dump_json())
                pipe.pexpire(key, ms(HANDOFF_TTL_SECONDS))
                await store.io(pipe.execute())
        except (StoreDown, StoreBusy):
            log.warning("held caller input could not be handed over", extra={"session_id": session_id})

    async def take_handoff(self, session_id: str, from_pod: str, within: float) -> Handoff | None:
        """Wait up to ``within`` seconds for the handoff of ``from_pod`` (None: it never came, or that
        pod is gone: deregistered, lost or silent, so nothing more will come)."""
        store = self.store
        key = store.keys.handoff(session_id)
        deadline = time.monotonic() + within
        pod, pod_keys = from_pod, None
        if (source := source_of(from_pod)) is not None:  # a transfer: a pod of another agent
            agent, pod = source
            pod_keys = AgentKeys(store.keys.namespace, agent)
        while not store.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                # Short blocking steps: the client's socket timeout is shorter than the whole wait.
                popped = await store.io(store.redis.blpop([key], timeout=min(BLPOP_STEP_SECONDS, remaining)))
                alive = ("ready", "draining")
                if not popped and await self.registry.fresh_record(pod, alive, pod_keys) is None:
                    last: Any = await store.io(store.redis.lpop(key))  # pushed just before it went?
                    if last is None:
                        return None
                    popped = [key, last]
            except (StoreDown, StoreBusy):
                await asyncio.sleep(min(store.tuning.max_backoff_seconds, max(0.0, remaining)))
                continue
            if popped:
                try:
                    return Handoff.model_validate_json(text(popped[1]))
                except ValidationError as exc:
                    log.error("unreadable handoff ignored: %s", exc, extra={"session_id": session_id})
                    return None
        return None
