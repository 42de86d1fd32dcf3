"""How an agent pod reaches its Redis: the environment and Secret volumes rendered from spec.redis.

Secrets stay Secrets: URLs and passwords come in through ``secretKeyRef`` env vars, the TLS CA
and client certificate as read-only files (agent_pod.settings reads both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_pod.config import RedisSpec, SecretKeyRef

TLS_CA_DIR = "/etc/voicefleet/redis-tls-ca"
TLS_CLIENT_DIR = "/etc/voicefleet/redis-tls-client"


@dataclass
class RedisPodParts:
    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def _from_secret(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def redis_pod_parts(redis: RedisSpec, default_url: str) -> RedisPodParts:
    parts = RedisPodParts()
    env = parts.env
    if redis.sentinel is not None:
        sentinel = redis.sentinel
        env.append(_value("VOICEFLEET_REDIS_SENTINELS", ",".join(sentinel.addresses)))
        env.append(_value("VOICEFLEET_REDIS_SENTINEL_MASTER", sentinel.master_name))
        if sentinel.password_secret_ref is not None:
            env.append(_from_secret("VOICEFLEET_REDIS_SENTINEL_PASSWORD", sentinel.password_secret_ref))
    elif redis.secret_ref is not None:
        env.append(_from_secret("VOICEFLEET_REDIS_URL", redis.secret_ref))
    else:
        env.append(_value("VOICEFLEET_REDIS_URL", redis.url or default_url))
    if redis.password_secret_ref is not None:
        env.append(_from_secret("VOICEFLEET_REDIS_PASSWORD", redis.password_secret_ref))
    if redis.cluster:
        env.append(_value("VOICEFLEET_REDIS_CLUSTER", "true"))
    if redis.tls is not None:
        ca = redis.tls.ca_secret_ref
        env.append(_value("VOICEFLEET_REDIS_TLS", "true"))
        env.append(_value("VOICEFLEET_REDIS_TLS_CA_FILE", f"{TLS_CA_DIR}/ca.crt"))
        parts.volumes.append(
            {
                "name": "redis-tls-ca",
                "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": "ca.crt"}]},
            }
        )
        parts.mounts.append({"name": "redis-tls-ca", "mountPath": TLS_CA_DIR, "readOnly": True})
        if redis.tls.client_cert_secret_name:
            env.append(_value("VOICEFLEET_REDIS_TLS_CERT_FILE", f"{TLS_CLIENT_DIR}/tls.crt"))
            env.append(_value("VOICEFLEET_REDIS_TLS_KEY_FILE", f"{TLS_CLIENT_DIR}/tls.key"))
            parts.volumes.append(
                {
                    "name": "redis-tls-client",
                    "secret": {
                        "secretName": redis.tls.client_cert_secret_name,
                        "items": [
                            {"key": "tls.crt", "path": "tls.crt"},
                            {"key": "tls.key", "path": "tls.key"},
                        ],
                    },
                }
            )
            parts.mounts.append({"name": "redis-tls-client", "mountPath": TLS_CLIENT_DIR, "readOnly": True})
    return parts
