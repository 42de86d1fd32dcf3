"""LocalDirectory (one pod, no Redis) and the factory that picks the directory from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_pod.config import AgentConfig, SessionSpec
from agent_pod.sessions.directory import AdmissionError, LocalDirectory, PodIdentity
from agent_pod.sessions.factory import build_directory
from agent_pod.sessions.redis_client import RedisConnection
from agent_pod.sessions.redis_directory import RedisDirectory
from tests.support.redis import RedisServer

from .helpers import KEY, conversation


@dataclass
class Settings:
    pod_name: str = "pod-x"
    revision: str = "rev-9"
    redis_url: str | None = None
    resume_key_file: Path | None = None

    @property
    def redis_connection(self) -> RedisConnection | None:
        return RedisConnection(url=self.redis_url) if self.redis_url else None


async def test_local_directory_creates_admits_and_resumes_with_tokens() -> None:
    local = LocalDirectory(
        PodIdentity(name="solo", grpc_address="127.0.0.1:1", http_url="http://h:2"), capacity=2
    )
    grant = await local.create({})
    assert grant.pod == "solo" and grant.webrtc_url == f"http://h:2/v1/sessions/{grant.session_id}/webrtc"
    with pytest.raises(AdmissionError) as refused:
        await local.admit(grant.session_id, None, "p")
    assert refused.value.code == "unauthenticated"
    admission = await local.admit(grant.session_id, grant.resume_token, "p")
    assert not admission.resumed and local.live_sessions == 1
    await local.snapshot(conversation(grant.session_id, 2))
    await local.release(grant.session_id, "transport_lost")
    assert (await local.resume(grant.session_id, grant.resume_token)).resumed
    again = await local.admit(grant.session_id, grant.resume_token, "p")
    assert again.resumed and again.conversation == conversation(grant.session_id, 2)
    direct = await local.admit(None, None, "p")
    assert direct.resume_token
    with pytest.raises(AdmissionError) as full:
        await local.create({})
    assert full.value.code == "unavailable"
    await local.release(grant.session_id, "completed")
    with pytest.raises(AdmissionError) as gone:
        await local.resume(grant.session_id, grant.resume_token)
    assert gone.value.code == "not_found"
    await local.drain()
    with pytest.raises(AdmissionError, match="draining"):
        await local.admit(None, None, "p")


def test_factory_without_redis_builds_a_local_directory() -> None:
    directory = build_directory(Settings(), AgentConfig())
    assert isinstance(directory, LocalDirectory) and directory.identity.name == "pod-x"


def test_factory_with_redis_requires_the_resume_key(tmp_path: Path, redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="VOICEFLEET_RESUME_KEY_FILE is required"):
        build_directory(Settings(redis_url=redis_server.url), AgentConfig())
    key = tmp_path / "key"
    key.write_bytes(KEY)
    config = AgentConfig(agent="shop", namespace="prod", session=SessionSpec(placement_epsilon=0.5))
    directory = build_directory(Settings(redis_url=redis_server.url, resume_key_file=key), config)
    assert isinstance(directory, RedisDirectory)
    assert directory.keys.prefix == "vf:v1:{prod/shop}:" and directory.tuning.epsilon == 0.5
    assert directory.capacity == config.sessions_per_pod and directory.prompt_id == config.prompt_id
    assert directory.tokens.ttl_seconds > config.session.max_duration_seconds
