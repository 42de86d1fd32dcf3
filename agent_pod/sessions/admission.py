"""Streams arriving on this pod: admit them (the CLAIM script pins the session here and hands back
its snapshot) and release them when they end.

While Redis is unreachable a stream is admitted from local knowledge: a session
this pod holds, or a new one when this pod has room. A call that follows a
migration needs Redis (only Redis knows the move) and is refused then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from ..conversation import Conversation
from . import session_metrics
from .directory import (
    RESUMABLE_OUTCOMES,
    Admission,
    AdmissionError,
    check_session_id,
    detached_hold_seconds,
    full_retry_after,
    has_turns,
    new_session_id,
    verify_token,
)
from .keys import source_of
from .local_state import Owned, resolve
from .placement_store import NO_ROOM_RETRY_SECONDS, SessionPlacement, busy
from .script_keys import claim_keys, release_keys
from .store import StoreBusy, StoreDown, text
from .tokens import token_hash
from .tuning import ms

log = logging.getLogger("voicefleet.sessions")


def parse_snapshot(session_id: str, raw: str) -> Conversation | None:
    try:
        return Conversation.model_validate_json(raw)
    except ValidationError as exc:
        log.error("unreadable snapshot ignored: %s", exc, extra={"session_id": session_id})
        return None


class StreamAdmission:
    def __init__(self, placement: SessionPlacement) -> None:
        self.placement = placement
        self.store = placement.store
        self.local = placement.local
        self.identity = placement.identity
        self.capacity = placement.capacity
        self.tokens = placement.tokens

    async def admit(
        self,
        session_id: str | None,
        resume_token: str | None,
        prompt_id: str,
        migration_token: str | None = None,
        roaming: bool = False,
    ) -> Admission:
        if self.placement.registry.draining:
            raise AdmissionError(
                "unavailable", "pod is draining; resume the session to be placed on another pod", 1.0
            )
        new = not session_id
        migration_hash = ""
        if new:
            if migration_token:
                raise AdmissionError(
                    "invalid_argument", "a migration token needs the session id it was given for"
                )
            session_id = new_session_id()
            issued = self.tokens.issue(session_id)
            resume_token = issued.token
        else:
            assert session_id is not None
            check_session_id(session_id)
            if migration_token:
                migration_hash = token_hash(migration_token)
            else:
                verify_token(self.tokens, session_id, resume_token)
        th = token_hash(resume_token) if resume_token and not migration_hash else ""
        owned = self.local.get(session_id)
        if owned is not None and owned.state in ("live", "moving"):
            raise AdmissionError("unavailable", "session is already connected to this pod", 1.0)
        if owned is not None and th and owned.token_hash != th:
            raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
        try:
            self.store.require()
            may_create = new or owned is not None
            result = await self._claim(session_id, th, prompt_id, migration_hash, may_create, roaming)
        except StoreBusy:
            raise busy() from None
        except StoreDown:
            if migration_hash:  # only Redis knows the move: the caller stays on its pod for now
                raise AdmissionError(
                    "unavailable", "session store unreachable; the call stays where it is", 1.0
                ) from None
            assert resume_token is not None
            return self._admit_local(session_id, th, prompt_id, new, resume_token)
        status = text(result[0])
        if status == "unauthenticated":
            if migration_hash:
                raise AdmissionError(
                    "unauthenticated", "migration token is unknown, spent or for another pod"
                )
            raise AdmissionError("unauthenticated", "resume token is not the one issued for this session")
        if status == "ended":
            raise AdmissionError("not_found", "session has ended or expired; create a new one")
        if status == "wrong_pod":
            owner, address = text(result[1]), text(result[2])
            raise AdmissionError(
                "wrong_pod",
                f"session lives on pod {owner} ({address}); connect there or resume it",
                grpc_address=address,
            )
        if status == "full":
            retry = full_retry_after(o.until for o in self.local.owned.values())
            raise AdmissionError("unavailable", f"pod is at capacity ({self.capacity} sessions)", retry)
        previous_state, raw_snapshot = text(result[2]), text(result[3])
        moved_from, th, frozen_ms = text(result[4]), text(result[5]), int(text(result[6]) or 0)
        conversation = owned.conversation if owned is not None else None
        if conversation is None and raw_snapshot:
            conversation = parse_snapshot(session_id, raw_snapshot)
        fresh_token = resume_token if new else None
        if source_of(moved_from) is not None:
            # Transferred from another agent, whose resume key may differ: the caller gets one of ours.
            fresh_token, th = await self._reissue(session_id, th)
        self.local.own(
            session_id,
            Owned(
                token_hash=th,
                prompt_id=prompt_id,
                state="live",
                conversation=conversation,
                version=owned.version if owned else 0,
                written=owned.written if owned else 0,
            ),
        )
        resumed = previous_state in ("live", "detached", "moving") or has_turns(conversation)
        log.info(
            "session admitted (resumed=%s, moved from %s)",
            resumed,
            moved_from or "-",
            extra={"session_id": session_id},
        )
        return Admission(
            session_id=session_id,
            resumed=resumed,
            conversation=conversation,
            resume_token=fresh_token,
            moved_from=moved_from or None,
            frozen_unix_ms=frozen_ms,
        )

    async def _claim(
        self, session_id: str, th: str, prompt_id: str, migration_hash: str, may_create: bool, roaming: bool
    ) -> list[Any]:
        """The CLAIM step; asked again with the owner's keys when the pin names another pod."""
        store, keys, tuning, me = self.store, self.store.keys, self.store.tuning, self.identity.name
        guess = me
        while True:
            result: list[Any] = await store.io(
                store.scripts.claim(
                    keys=claim_keys(keys, session_id, me, guess),
                    args=[
                        session_id,
                        me,
                        th,
                        ms(tuning.stale_seconds),
                        ms(tuning.stale_seconds),
                        ms(tuning.pin_ttl_seconds),
                        prompt_id,
                        self.capacity,
                        self.identity.revision,
                        migration_hash,
                        guess,
                        "1" if may_create else "0",
                        "1" if roaming else "0",
                    ],
                )
            )
            if text(result[0]) != "retry":
                return result
            guess = text(result[1])

    async def _reissue(self, session_id: str, th: str) -> tuple[str | None, str]:
        """A resume token of this agent for the call, and its hash (None, ``th``: Redis failed; the
        caller keeps the token it has)."""
        issued = self.tokens.issue(session_id)
        fresh = token_hash(issued.token)
        store = self.store
        try:
            await store.io(store.redis.hset(store.keys.pin(session_id), "token_hash", fresh))
        except (StoreDown, StoreBusy):
            return None, th
        return issued.token, fresh

    def _admit_local(self, session_id: str, th: str, prompt_id: str, new: bool, token: str) -> Admission:
        """Redis is down: admit what this pod knows, or a new session if it has room."""
        owned = self.local.get(session_id)
        if owned is not None:
            owned.state, owned.until = "live", None
            return Admission(
                session_id=session_id, resumed=has_turns(owned.conversation), conversation=owned.conversation
            )
        # A slot Redis reserved here before the outage is this caller's; a new session needs room.
        if self.local.holds(session_id) or (new and self.placement.local_room()):
            self.local.own(session_id, Owned(token_hash=th, prompt_id=prompt_id, state="live"))
            session_metrics.PLACEMENTS.labels("local").inc()
            return Admission(session_id=session_id, resume_token=token)
        raise AdmissionError(
            "unavailable",
            "session store unreachable and this pod cannot take the session; retry shortly",
            NO_ROOM_RETRY_SECONDS,
        )

    async def release(self, session_id: str, outcome: str) -> None:
        owned = self.local.get(session_id)
        if owned is None:
            return
        detach = outcome in RESUMABLE_OUTCOMES
        if detach:
            owned.state = "detached"
            hold = detached_hold_seconds(owned.conversation, self.store.tuning.resume_window_seconds)
            owned.until = time.monotonic() + hold
        else:
            self.local.disown(session_id)
            self.local.report_depth()
            resolve(owned, ok=False)
        store, keys, me = self.store, self.store.keys, self.identity.name
        try:
            store.require()
            guess = me
            while True:  # asked again with the owner's load when the call was moving away
                result = await store.io(
                    store.scripts.release(
                        keys=release_keys(keys, session_id, me, guess),
                        args=[
                            me,
                            session_id,
                            "detach" if detach else "end",
                            ms(detached_hold_seconds(owned.conversation, store.tuning.resume_window_seconds)),
                            guess,
                        ],
                    )
                )
                if not isinstance(result, list) or text(result[0]) != "retry":
                    break
                guess = text(result[1])
        except (StoreDown, StoreBusy):
            if not detach:  # a detached session is re-synced by the heartbeat anyway
                self.local.ended[session_id] = None
        log.info("session released (%s)", outcome, extra={"session_id": session_id})
