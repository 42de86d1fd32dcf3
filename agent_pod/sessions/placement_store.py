"""The session API's side of the directory: create a session (place it on the fleet) and resume one.

A new session goes to the pod the PLACE script picks (bounded-load consistent
hashing over the ring order ``placement.ring_order`` computes, on its side of a
canary split when the operator runs one) and holds a reserved slot there until
its caller connects. A resume goes back to the pinned
pod while it lives; otherwise the session is re-placed and its conversation
comes back from its snapshot. While Redis is unreachable a create is served by
this pod when it has room, and a resume only for a session this pod holds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from ..conversation import Conversation
from . import session_metrics
from .directory import AdmissionError, Grant, PodIdentity, check_session_id, new_session_id, verify_token
from .local_state import LocalSessions, Owned
from .placement import revision_bucket, ring_order
from .records import PinRecord
from .registry import PodRegistry
from .script_keys import place_keys
from .store import Store, StoreBusy, StoreDown, text
from .tokens import ResumeTokens, token_hash
from .tuning import DirectoryTuning, ms

log = logging.getLogger("voicefleet.sessions")
NO_ROOM_RETRY_SECONDS = 2.0
LIST_ATTEMPTS = 3  # pods registering faster than this are not worth chasing: "full", retry shortly
BUSY_RETRY_SECONDS = 1.0


def place_args(
    session_id: str,
    tuning: DirectoryTuning,
    lease_seconds: float,
    th: str,
    expected_owner: str,
    order: list[str],
) -> list[Any]:
    """The PLACE script's arguments, in its order (``order``: the agent's pods in ring order)."""
    return [
        session_id,
        repr(tuning.epsilon),
        ms(tuning.stale_seconds),
        ms(lease_seconds),
        ms(tuning.pin_ttl_seconds),
        th,
        expected_owner,
        revision_bucket(session_id),
        *order,
    ]


def busy() -> AdmissionError:
    session_metrics.PLACEMENTS.labels("unavailable").inc()
    return AdmissionError("unavailable", "session store busy; retry shortly", BUSY_RETRY_SECONDS)


def count_placed(result: list[Any]) -> None:
    """The side of a canary split a placed session went to, and whether its own side was full."""
    side = text(result[6])
    if side:
        session_metrics.ROLLOUT_PLACEMENTS.labels(side).inc()
        if text(result[7]) == "1":
            session_metrics.REVISION_FALLBACKS.labels(side).inc()


def grant(session_id: str, token: str, expires: int, pod: str, grpc: str, http: str, resumed: bool) -> Grant:
    return Grant(
        session_id=session_id,
        resume_token=token,
        pod=pod,
        grpc_address=grpc,
        webrtc_url=PodIdentity(name=pod, http_url=http).webrtc_url(session_id),
        resumed=resumed,
        token_expires_unix=expires,
    )


class SessionPlacement:
    def __init__(
        self,
        store: Store,
        local: LocalSessions,
        registry: PodRegistry,
        identity: PodIdentity,
        capacity: int,
        tokens: ResumeTokens,
        prompt_id: str,
    ) -> None:
        self.store = store
        self.local = local
        self.registry = registry
        self.identity = identity
        self.capacity = capacity
        self.tokens = tokens
        self.prompt_id = prompt_id

    def local_room(self) -> bool:
        return not self.registry.draining and self.local.has_room(self.capacity)

    def _grant_here(self, session_id: str, token: str, expires: int, resumed: bool) -> Grant:
        i = self.identity
        return grant(session_id, token, expires, i.name, i.grpc_address, i.http_url, resumed)

    async def create(self, metadata: dict[str, str], session_id: str | None = None) -> Grant:
        started = time.perf_counter()
        session_id = session_id or new_session_id()
        issued = self.tokens.issue(session_id)
        th = token_hash(issued.token)
        try:
            self.store.require()
            result = await self.place(session_id, th, expected_owner="")
        except StoreBusy:
            raise busy() from None
        except StoreDown:
            if not self.local_room():
                session_metrics.PLACEMENTS.labels("unavailable").inc()
                raise AdmissionError(
                    "unavailable",
                    "session store unreachable and this pod has no room; retry shortly",
                    NO_ROOM_RETRY_SECONDS,
                ) from None
            until = time.monotonic() + self.store.tuning.reservation_seconds
            context = self._context(session_id, metadata)
            self.local.own(
                session_id,
                Owned(
                    token_hash=th,
                    prompt_id=self.prompt_id,
                    state="reserved",
                    until=until,
                    conversation=context,
                ),
            )
            session_metrics.PLACEMENTS.labels("local").inc()
            return self._grant_here(session_id, issued.token, issued.expires_unix, resumed=False)
        session_metrics.PLACEMENT_SECONDS.observe(time.perf_counter() - started)
        status = text(result[0])
        if status != "placed":
            session_metrics.PLACEMENTS.labels("no_capacity").inc()
            raise AdmissionError(
                "unavailable", "no agent pod has room for a new session", NO_ROOM_RETRY_SECONDS
            )
        session_metrics.PLACEMENTS.labels("placed").inc()
        count_placed(result)
        pod, grpc, http = text(result[1]), text(result[4]), text(result[5])
        if pod == self.identity.name:
            self.local.hold(session_id, self.store.tuning.reservation_seconds)
        context = self._context(session_id, metadata)
        if context is not None:
            # The caller context reaches whichever pod admits the stream, as the session's first snapshot.
            with contextlib.suppress(StoreDown):
                snapshot = self.store.keys.snapshot(session_id)
                ttl = ms(self.store.tuning.snapshot_ttl_seconds)
                await self.store.io(
                    self.store.redis.set(snapshot, context.model_dump_json(), px=ttl, nx=True)
                )
        log.info("session placed on %s", pod, extra={"session_id": session_id})
        return grant(session_id, issued.token, issued.expires_unix, pod, grpc, http, resumed=False)

    def _context(self, session_id: str, metadata: dict[str, str]) -> Conversation | None:
        if not metadata:
            return None
        return Conversation(session_id=session_id, prompt_id=self.prompt_id, metadata=metadata)

    async def place(self, session_id: str, th: str, expected_owner: str) -> list[Any]:
        store, keys, tuning = self.store, self.store.keys, self.store.tuning
        names = self.registry.pod_names
        for _ in range(LIST_ATTEMPTS):
            if not names:
                names = sorted(text(n) for n in await store.io(store.redis.smembers(keys.pods)))
            order = ring_order(session_id, names)
            args = place_args(session_id, tuning, tuning.reservation_seconds, th, expected_owner, order)
            script_keys = place_keys(keys, session_id, expected_owner, order)
            result: list[Any] = await store.io(store.scripts.place(keys=script_keys, args=args))
            if text(result[0]) != "stale_list":
                return result
            names = []  # a pod registered since the list was read: read it again
        return ["full", "", 0, 0]

    async def resume(self, session_id: str, resume_token: str | None) -> Grant:
        check_session_id(session_id)
        expires = verify_token(self.tokens, session_id, resume_token)
        assert resume_token is not None
        th = token_hash(resume_token)
        try:
            self.store.require()
            return await self._resume(session_id, resume_token, expires, th)
        except StoreBusy:
            raise busy() from None
        except StoreDown:
            owned = self.local.get(session_id)
            if owned is not None and owned.token_hash == th:
                return self._grant_here(session_id, resume_token, expires, resumed=True)
            session_metrics.PLACEMENTS.labels("unavailable").inc()
            raise AdmissionError(
                "unavailable", "session store unreachable; retry shortly", NO_ROOM_RETRY_SECONDS
            ) from None

    async def _resume(self, session_id: str, token: str, expires: int, th: str) -> Grant:
        started = time.perf_counter()
        store, registry = self.store, self.registry
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(store.keys.pin(session_id))
            pipe.exists(store.keys.snapshot(session_id))
            raw_pin, has_snapshot = await store.io(pipe.execute())
        expected = ""
        if raw_pin:
            pin = PinRecord.from_mapping(raw_pin)
            if pin.token_hash != th:
                raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
            expected = pin.pod
            if pin.pod == self.identity.name and not registry.draining:
                return self._grant_here(session_id, token, expires, resumed=True)
            if pin.pod != self.identity.name:
                owner = await registry.live_owner(pin.pod)
                if owner is not None:
                    return grant(
                        session_id,
                        token,
                        expires,
                        owner.name,
                        owner.grpc_address,
                        owner.http_url,
                        resumed=True,
                    )
        elif not has_snapshot:
            raise AdmissionError("not_found", "session has ended or expired; create a new one")
        result = await self.place(session_id, th, expected_owner=expected)
        status = text(result[0])
        if status == "moved":  # a concurrent resume re-placed it first
            owner = await registry.live_owner(text(result[1]), probe=False)
            if owner is None:
                raise AdmissionError("unavailable", "session is being moved; retry shortly", 1.0)
            return grant(
                session_id, token, expires, owner.name, owner.grpc_address, owner.http_url, resumed=True
            )
        if status != "placed":
            session_metrics.PLACEMENTS.labels("no_capacity").inc()
            raise AdmissionError(
                "unavailable", "no agent pod has room to resume the session", NO_ROOM_RETRY_SECONDS
            )
        session_metrics.PLACEMENT_SECONDS.observe(time.perf_counter() - started)
        session_metrics.PLACEMENTS.labels("replaced").inc()
        count_placed(result)
        if expected == self.identity.name:
            self.local.disown(session_id)
        pod, grpc, http = text(result[1]), text(result[4]), text(result[5])
        log.info(
            "session re-placed from %s to %s",
            expected or "(expired pin)",
            pod,
            extra={"session_id": session_id},
        )
        return grant(session_id, token, expires, pod, grpc, http, resumed=True)
