"""A Kubernetes Event on the VoiceAgent, as the pure deciders return it (handlers post it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False
