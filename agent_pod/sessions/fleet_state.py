"""The fleet as Redis sees it: what the operator reads for autoscaling, status and
pod-deletion-cost (the cost rule itself lives in voicefleet_operator.deletion_cost), and the
cleanup its finalizer runs when a VoiceAgent is deleted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .keys import AgentKeys
from .placement import is_fresh
from .records import PodRecord, decode_mapping
from .redis_client import AnyRedis

DEFAULT_STALE_SECONDS = 6.0
DELETE_BATCH = 500


class FleetPod(BaseModel):
    name: str
    address: str = Field(description="host:port of the pod's gRPC service.")
    http_url: str
    revision: str
    state: Literal["ready", "draining", "lost"]
    stale: bool = Field(description="No heartbeat within the stale window: the pod is gone or cut off.")
    live_sessions: int = Field(description="Streams the pod serves (as of its last heartbeat).")
    load: int = Field(description="Sessions placed on the pod: live, reserved and resumable.")
    capacity: int
    heartbeat_age_seconds: float


class FleetState(BaseModel):
    namespace: str
    agent: str
    pods: list[FleetPod]
    live_sessions: int = Field(description="Over pods with a fresh heartbeat.")
    load: int
    capacity: int = Field(description="Of fresh, ready pods.")
    ready_pods: int
    draining_pods: int


def fleet_state(
    namespace: str, agent: str, pods: list[tuple[PodRecord, int]], now_ms: int, stale_ms: int
) -> FleetState:
    """Pure: fleet totals from registry records and their loads."""
    out: list[FleetPod] = []
    for record, load in pods:
        out.append(
            FleetPod(
                name=record.name,
                address=record.grpc_address,
                http_url=record.http_url,
                revision=record.revision,
                state=record.state,
                stale=not is_fresh(record.heartbeat_ms, now_ms, stale_ms),
                live_sessions=record.live,
                load=load,
                capacity=record.capacity,
                heartbeat_age_seconds=max(0.0, (now_ms - record.heartbeat_ms) / 1000),
            )
        )
    out.sort(key=lambda p: p.name)
    fresh = [p for p in out if not p.stale]
    ready = [p for p in fresh if p.state == "ready"]
    return FleetState(
        namespace=namespace,
        agent=agent,
        pods=out,
        live_sessions=sum(p.live_sessions for p in fresh),
        load=sum(p.load for p in fresh),
        capacity=sum(p.capacity for p in ready),
        ready_pods=len(ready),
        draining_pods=sum(1 for p in fresh if p.state == "draining"),
    )


async def read_fleet(
    redis: AnyRedis, namespace: str, agent: str, stale_seconds: float = DEFAULT_STALE_SECONDS
) -> FleetState:
    keys = AgentKeys(namespace, agent)
    names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in await redis.smembers(keys.pods))
    seconds, micros = await redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.pod(name))
        pipe.zcount(keys.load(name), now_ms, "+inf")
    replies: list[Any] = await pipe.execute() if names else []
    pods: list[tuple[PodRecord, int]] = []
    for i in range(len(names)):
        raw, load = replies[2 * i], replies[2 * i + 1]
        if raw:  # an expired entry still listed in the set
            pods.append((PodRecord.from_mapping(decode_mapping(raw)), int(load)))
    return fleet_state(namespace, agent, pods, now_ms, int(stale_seconds * 1000))


async def delete_agent_keys(redis: AnyRedis, namespace: str, agent: str) -> int:
    """Remove every session-layer key of the VoiceAgent; returns how many were deleted."""
    keys = AgentKeys(namespace, agent)
    deleted = 0
    batch: list[Any] = []
    async for key in redis.scan_iter(match=keys.match_all, count=DELETE_BATCH):
        batch.append(key)
        if len(batch) >= DELETE_BATCH:
            deleted += int(await redis.unlink(*batch))
            batch = []
    if batch:
        deleted += int(await redis.unlink(*batch))
    return deleted
