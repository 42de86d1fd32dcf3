"""What the session layer keeps in Redis, as pydantic records.

Hash field names are the snake_case field names below; the Lua scripts in
``scripts.py`` read and write the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PodState = Literal["ready", "draining", "lost"]
PinState = Literal["reserved", "live", "detached", "moving"]


def decode_mapping(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as str -> str, whether or not the client decodes responses."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }


class _HashRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_mapping(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump(mode="json").items()}


class PodRecord(_HashRecord):
    """A pod's registry entry, rewritten by its heartbeat (``heartbeat_ms`` is Redis server time)."""

    name: str
    grpc_address: str = ""
    http_url: str = ""
    revision: str = ""
    prompt_id: str = ""
    capacity: int = Field(ge=0)
    live: int = Field(default=0, ge=0, description="Streams the pod serves right now.")
    state: PodState = "ready"
    heartbeat_ms: int = 0

    @classmethod
    def from_mapping(cls, raw: Mapping[Any, Any]) -> PodRecord:
        return cls.model_validate(decode_mapping(raw))


class PinRecord(_HashRecord):
    """Which pod owns a session; expires unless the owner's heartbeats refresh it."""

    pod: str
    revision: str = ""
    prompt_id: str = ""
    token_hash: str
    state: PinState = "reserved"
    created_ms: int = 0
    updated_ms: int = 0
    # While the call is moving (state "moving"): the pod it leaves, when that pod stopped listening
    # (its wall clock, ms) and the hash of the one-time migration token the caller follows with.
    moving_from: str = ""
    frozen_ms: int = 0
    handoff_hash: str = ""

    @classmethod
    def from_mapping(cls, raw: Mapping[Any, Any]) -> PinRecord:
        return cls.model_validate(decode_mapping(raw))


class Rollout(_HashRecord):
    """A canary rollout of an agent: new sessions whose bucket (0..99) is below ``weight`` go to pods of
    revision ``canary``, the rest to every other revision (the stable one)."""

    canary: str = Field(min_length=1, max_length=128, description="The canary's revision (config hash).")
    weight: int = Field(ge=0, le=100, description="Percent of new sessions placed on the canary.")

    @classmethod
    def from_mapping(cls, raw: Mapping[Any, Any]) -> Rollout:
        return cls.model_validate(decode_mapping(raw))


class HeldInput(BaseModel):
    """Caller input a pod held back while it handed the call over: audio at ``rate``, typed text, or the
    caller ending the call."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
    rate: int = 0
    pcm: bytes = b""
    text: str = ""
    end: bool = False

    @property
    def seconds(self) -> float:
        """Length of the held audio (PCM16 mono)."""
        return len(self.pcm) / 2 / self.rate if self.rate else 0.0


class Handoff(BaseModel):
    """What the old pod hands the new one once the caller has followed a migration."""

    from_pod: str
    inputs: list[HeldInput] = Field(default_factory=list)
