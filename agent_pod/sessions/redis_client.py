"""The session layer's Redis client, built from one description of where Redis is.

``RedisConnection`` says how to reach Redis: a single server (``url``), a
Sentinel-managed master (``sentinels`` + ``sentinel_master``) or a Redis Cluster
(``cluster``, ``url`` naming a seed node), each optionally over TLS. The pod
builds it from its environment, the operator from the VoiceAgent's spec and
Secrets; ``connect`` turns it into a redis.asyncio client either way.

Commands queue for a pooled connection (a bounded wait) instead of failing when
every connection is busy: a burst of creates is back-pressure, not an outage.
A wait that runs out raises ``PoolExhausted``, which the directory answers with
"unavailable, retry shortly" without counting a Redis error or falling back to
local admission (that fallback is for a Redis that is really down). Redis
Cluster clients have no queue in redis-py: a node's full pool raises at once
(also back-pressure).

Under Sentinel the pool asks the sentinels for the master before each new
connection, and a demoted master's ReadOnlyError closes the connection, so a
failover looks like a short outage to the directory: it falls back to local
state, probes with backoff and resumes on the new master.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from pydantic import BaseModel, ConfigDict, Field, model_validator
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialBackoff

# Fail fast when Redis is unreachable (the directory falls back to local state);
# one quick retry covers a pooled connection that died with a Redis restart.
CONNECT_TIMEOUT_SECONDS = 0.5
SOCKET_TIMEOUT_SECONDS = 1.0
POOL_CONNECTIONS = 64
POOL_WAIT_SECONDS = 2.0

AnyRedis = Redis | RedisCluster


class RedisConnection(BaseModel):
    """Where Redis is and how to talk to it (secrets already resolved)."""

    model_config = ConfigDict(frozen=True)

    url: str | None = Field(default=None, description="redis:// or rediss:// URL (a seed node with cluster).")
    sentinels: tuple[str, ...] = Field(default=(), description="host:port of each sentinel.")
    sentinel_master: str = ""
    sentinel_password: str | None = None
    password: str | None = Field(default=None, description="Password of the data nodes (else from the URL).")
    cluster: bool = False
    tls: bool = False
    tls_ca_file: str | None = None
    tls_ca_data: str | None = Field(default=None, description="PEM CA bundle, instead of a file.")
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @model_validator(mode="after")
    def _one_topology(self) -> RedisConnection:
        if self.sentinels and not self.sentinel_master:
            raise ValueError("sentinel addresses need the master's name")
        if self.sentinels and (self.cluster or self.url):
            raise ValueError("sentinels name the master: no url and no cluster with them")
        if not self.sentinels and not self.url:
            raise ValueError("a Redis url or sentinel addresses are required")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.url and self.url.startswith("rediss://"))

    def tls_options(self) -> dict[str, Any]:
        """redis-py's ssl_* options (empty without TLS)."""
        if not self.uses_tls:
            return {}
        options: dict[str, Any] = {"ssl_cert_reqs": "required"}
        for name, value in (
            ("ssl_ca_certs", self.tls_ca_file),
            ("ssl_ca_data", self.tls_ca_data),
            ("ssl_certfile", self.tls_cert_file),
            ("ssl_keyfile", self.tls_key_file),
        ):
            if value:
                options[name] = value
        return options


class PoolExhausted(redis.exceptions.MaxConnectionsError):
    """No pooled connection came free within the wait."""


class QueuedConnectionPool(BlockingConnectionPool):
    """A blocking pool whose timed-out wait is told apart from a connection failure."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except redis.exceptions.ConnectionError as exc:
            # BlockingConnectionPool raises a plain ConnectionError from the wait's TimeoutError.
            if isinstance(exc.__cause__, TimeoutError) and str(exc) == "No connection available.":
                raise PoolExhausted(f"no Redis connection free within {self.timeout}s") from exc
            raise


class QueuedSentinelPool(QueuedConnectionPool, SentinelConnectionPool):
    """The same queue in front of a Sentinel-managed master's connections."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs["connection_class"] = SentinelManagedSSLConnection if ssl else SentinelManagedConnection
        super().__init__(service_name=service_name, sentinel_manager=sentinel_manager, **kwargs)


def client_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    }


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def connect(conn: RedisConnection, **overrides: Any) -> AnyRedis:
    """A client for ``conn`` (``overrides``: client options such as timeouts or decode_responses)."""
    options = {**client_options(), **conn.tls_options(), **overrides}
    if conn.password:
        options["password"] = conn.password
    if conn.sentinels:
        # The sentinels' own clients keep the quick retry too: redis-py's default backs off for
        # seconds on every unreachable or refusing sentinel.
        sentinel_options = {k: v for k, v in options.items() if k not in ("decode_responses", "password")}
        if conn.sentinel_password:
            sentinel_options["password"] = conn.sentinel_password
        if conn.uses_tls:
            sentinel_options["ssl"] = True
        sentinel = Sentinel(
            [split_host_port(a) for a in conn.sentinels], sentinel_kwargs=sentinel_options, **options
        )
        client: Redis = sentinel.master_for(
            conn.sentinel_master,
            connection_pool_class=QueuedSentinelPool,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            ssl=conn.uses_tls,
        )
        return client
    assert conn.url is not None
    if conn.cluster:
        options.pop("retry")  # the cluster client retries moved slots and failovers itself
        return RedisCluster.from_url(conn.url, max_connections=POOL_CONNECTIONS, **options)
    pool = QueuedConnectionPool.from_url(
        conn.url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **options
    )
    return Redis.from_pool(pool)


def connect_redis(url: str) -> Redis:
    """A client of one server at ``url``."""
    client = connect(RedisConnection(url=url))
    assert isinstance(client, Redis)
    return client
