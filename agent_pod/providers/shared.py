"""Models a pod builds once and its sessions share, like the pipeline's providers: a client built per
session would leave a connection pool behind each call. Kept per event loop (the pod has one; tests run
a loop each), so an SDK client never outlives its loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")

_BUILT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def per_pod(kind: str, spec: BaseModel, build: Callable[[], T]) -> T:
    """The ``kind`` of model built from ``spec``: built on first use, then the same one."""
    built = _BUILT.setdefault(asyncio.get_running_loop(), {})
    key = (kind, spec.model_dump_json())
    if key not in built:
        built[key] = build()
    model: T = built[key]
    return model
