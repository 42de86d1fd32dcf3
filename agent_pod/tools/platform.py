"""What the tool layer shares across the sessions of one pod: the idempotency store, the breakers and
concurrency limits, and the MCP catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import AgentConfig, McpServerSpec
from ..sessions.directory import LocalDirectory
from ..sessions.keys import AgentKeys
from ..sessions.redis_client import AnyRedis
from ..sessions.redis_directory import RedisDirectory
from .guards import ToolGuards
from .idempotency import IdempotencyStore, LocalIdempotencyStore, RedisIdempotencyStore
from .mcp_source import McpCatalog


@dataclass
class ToolPlatform:
    store: IdempotencyStore = field(default_factory=LocalIdempotencyStore)
    guards: ToolGuards = field(default_factory=ToolGuards)
    mcp: McpCatalog = field(default_factory=lambda: McpCatalog([]))
    # Used when ``store`` (Redis) fails: the pod still never sends a call twice itself.
    fallback: LocalIdempotencyStore = field(default_factory=LocalIdempotencyStore)

    @classmethod
    def with_redis(cls, client: AnyRedis, keys: AgentKeys, mcp_servers: list[McpServerSpec]) -> ToolPlatform:
        return cls(store=RedisIdempotencyStore(client, keys), mcp=McpCatalog(mcp_servers))


def pod_platform(directory: RedisDirectory | LocalDirectory, config: AgentConfig) -> ToolPlatform:
    """The pod's platform: results shared through the directory's Redis when it has one."""
    if isinstance(directory, RedisDirectory):
        return ToolPlatform.with_redis(directory.redis, directory.keys, config.mcp_servers)
    return ToolPlatform(mcp=McpCatalog(config.mcp_servers))
