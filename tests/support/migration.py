"""In-process agent pods of one fleet on a real Redis, for the migration tests.

Every pod runs in the test's event loop on its own loopback ports, with the zero-latency synthetic
pipeline and a fleet-wide resume key. Fixture: ``fleet`` (on the shared redis-server). Helpers read
what a caller (gRPC or WebRTC) and a pod saw.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.runtime import Pod
from agent_pod.sessions.redis_directory import RedisDirectory
from agent_pod.settings import PodSettings
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer

RESUME_KEY = b"migration-test-key-0123456789abcdef"


def fleet_config(**session: Any) -> Any:
    return synthetic_config(
        "hello there",
        agent="mig-" + uuid.uuid4().hex[:6],
        namespace="migration",
        transport={"webrtc": {"enabled": True}},
        session={
            "drainTimeoutSeconds": 60,
            "idleTimeoutSeconds": 120,
            "migration": {"quietWaitSeconds": 20, "followTimeoutSeconds": 5, **session},
        },
        sessionsPerPod=50,
    )


async def crash_pod(pod: Pod) -> None:
    """The pod dies without a word: its ports close, its registry entry stays until it goes stale."""
    directory = pod.directory
    assert isinstance(directory, RedisDirectory) and pod.grpc is not None
    await directory.abandon()  # its loops stop; nothing is deregistered
    await pod.grpc.stop(grace=None)
    if pod.audio_socket is not None:
        await pod.audio_socket.aclose()
    for runner in pod._runners:
        await runner.cleanup()
    pod._runners.clear()
    if pod.hub is not None:
        await pod.hub.aclose()
    await pod.clock.stop()


class Fleet:
    def __init__(self, workdir: Path, redis: RedisServer, **session: Any) -> None:
        self.redis = redis
        self.config = fleet_config(**session)
        self.key_file = workdir / "resume.key"
        self.key_file.write_bytes(RESUME_KEY)
        self.pods: dict[str, Pod] = {}

    async def add(self, name: str, revision: str = "r1") -> Pod:
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name=name,
            revision=revision,
            redis_url=self.redis.url,
            resume_key_file=self.key_file,
            log_format="text",
        )
        pod = Pod(settings, self.config, pod_ports())
        await pod.start()
        self.pods[name] = pod
        return pod

    async def crash(self, name: str) -> None:
        await crash_pod(self.pods.pop(name))

    async def close(self) -> None:
        for pod in self.pods.values():
            await pod.stop()


@pytest.fixture
async def fleet(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path, redis_server)
    try:
        yield fleet
    finally:
        await fleet.close()


def events(call: GrpcCaller | WebRTCCaller, kind: str) -> list[dict[str, Any]]:
    return [fields for _, k, fields in call.recorder.events if k == kind]


async def answers(call: GrpcCaller | WebRTCCaller, count: int, within: float = 10.0) -> list[str]:
    summary = await call.recorder.wait(lambda s: len(s.agent_texts) >= count, within)
    return summary.agent_texts


def user_turns(pod: Pod) -> list[str]:
    """What the caller said, as the pod's one live session remembers it."""
    assert pod.hub is not None
    (live,) = pod.hub.live()
    return [m.content for m in live.session.conversation.messages if m.role == "user"]
