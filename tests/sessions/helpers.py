"""Directories on a real Redis for the session tests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from agent_pod.conversation import ChatMessage, Conversation
from agent_pod.sessions.directory import PodIdentity
from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.redis_client import AnyRedis, RedisConnection, connect
from agent_pod.sessions.redis_directory import DirectoryTuning, RedisDirectory
from agent_pod.sessions.revision_stats import RevisionTally
from agent_pod.sessions.tokens import ResumeTokens

KEY = b"test-resume-key-0123456789abcdef"
PROMPT = "v1@sha256:abc"
# Fast heartbeats so recovery and staleness happen within test time.
FAST = DirectoryTuning(heartbeat_seconds=0.2, stale_seconds=1.0, max_backoff_seconds=0.3)


def tokens() -> ResumeTokens:
    return ResumeTokens(KEY, 3600)


def conversation(session_id: str, turns: int) -> Conversation:
    messages: list[ChatMessage] = []
    for i in range(turns):
        messages.append(ChatMessage(role="user", content=f"question {i}"))
        messages.append(ChatMessage(role="assistant", content=f"answer {i}"))
    return Conversation(session_id=session_id, prompt_id=PROMPT, messages=messages, turns=turns)


@dataclass
class Fleet:
    """Several pods' directories of one agent, each with its own Redis client."""

    url: str
    keys: AgentKeys = field(default_factory=lambda: AgentKeys("test", "agent-" + uuid.uuid4().hex[:8]))
    pods: dict[str, RedisDirectory] = field(default_factory=dict)
    # Each pod's stand-in gRPC port: a real listener, so resume's reachability probe sees it.
    listeners: dict[str, asyncio.Server] = field(default_factory=dict)
    # How the pods reach Redis when it is not one plain server at ``url`` (Sentinel, Cluster, TLS).
    connection: RedisConnection | None = None

    def connect(self) -> AnyRedis:
        return connect(self.connection or RedisConnection(url=self.url))

    async def add(
        self,
        name: str,
        capacity: int = 50,
        tuning: DirectoryTuning = FAST,
        revision: str = "rev-1",
        revision_tally: RevisionTally | None = None,
    ) -> RedisDirectory:
        listener = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        self.listeners[name] = listener
        identity = PodIdentity(
            name=name,
            grpc_address=f"127.0.0.1:{port}",
            http_url=f"http://127.0.0.1:{port}",
            revision=revision,
        )
        directory = RedisDirectory(
            self.connect(),
            self.keys,
            identity,
            capacity,
            tokens(),
            prompt_id=PROMPT,
            tuning=tuning,
            revision_tally=revision_tally,
        )
        await directory.start()
        self.pods[name] = directory
        return directory

    def client(self) -> AnyRedis:
        return self.connect()

    async def crash(self, name: str) -> None:
        """The pod dies without a word (SIGKILL): no deregistration, its port closes."""
        await self.pods[name].abandon()
        self.listeners.pop(name).close()

    async def close(self) -> None:
        for directory in self.pods.values():
            await directory.aclose()
        for listener in self.listeners.values():
            listener.close()
