"""The operator's side of a canary in Redis: the split it writes (what PLACE reads), the checks on it,
and the answer when Redis is unreachable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes.aio import client as kube_client

from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import Rollout
from agent_pod.sessions.redis_client import RedisConnection, connect
from agent_pod.sessions.rollout_store import read_rollout
from tests.support.net import free_port
from tests.support.redis import RedisServer
from voicefleet_operator.fleet_reader import FleetReader
from voicefleet_operator.kube import Kube
from voicefleet_operator.plan import StoreDown
from voicefleet_operator.spec import VoiceAgentSpec

NAMESPACE = "canaries"


@pytest.fixture
async def reader(redis_server: RedisServer) -> AsyncIterator[FleetReader]:
    reader = FleetReader(Kube(kube_client.ApiClient(kube_client.Configuration())), redis_server.url)
    yield reader
    await reader.close()
    await reader.kube.close()


async def test_the_split_is_written_where_placement_reads_it_and_cleared(
    reader: FleetReader, redis_server: RedisServer
) -> None:
    agent = "desk-" + uuid.uuid4().hex[:6]
    keys = AgentKeys(NAMESPACE, agent)
    redis = connect(RedisConnection(url=redis_server.url))
    try:
        await reader.set_rollout(NAMESPACE, agent, VoiceAgentSpec(), "3f2a9c0d11b4e5f6", 20)
        assert await read_rollout(redis, keys) == Rollout(canary="3f2a9c0d11b4e5f6", weight=20)
        await reader.set_rollout(NAMESPACE, agent, VoiceAgentSpec(), "3f2a9c0d11b4e5f6", 0)
        assert await read_rollout(redis, keys) == Rollout(canary="3f2a9c0d11b4e5f6", weight=0)
        with pytest.raises(ValueError, match="weight"):
            await reader.set_rollout(NAMESPACE, agent, VoiceAgentSpec(), "3f2a9c0d11b4e5f6", 101)
        with pytest.raises(ValueError, match="canary"):
            await reader.set_rollout(NAMESPACE, agent, VoiceAgentSpec(), "", 50)
        assert (await read_rollout(redis, keys)) == Rollout(canary="3f2a9c0d11b4e5f6", weight=0)
        await reader.clear_rollout(NAMESPACE, agent, VoiceAgentSpec())
        assert await redis.exists(keys.rollout) == 0
        # A hash that is not a rollout is named, with the bad field.
        await redis.hset(keys.rollout, mapping={"canary": "x", "weight": "lots"})
        with pytest.raises(ValueError, match=r"(?s)rollout: .*weight"):
            await read_rollout(redis, keys)
    finally:
        await redis.delete(keys.rollout)
        await redis.aclose()


async def test_counters_of_an_unreachable_store_are_store_down(reader: FleetReader) -> None:
    spec = VoiceAgentSpec.model_validate({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}})
    answer = await reader.read_revision_counters(NAMESPACE, "desk", spec, ["rev-a"])
    assert isinstance(answer, StoreDown) and "unreachable" in answer.error
