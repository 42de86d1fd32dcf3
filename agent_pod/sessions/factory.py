"""Builds the pod's session directory from its settings and AgentConfig.

With a Redis connection (URL, Sentinel or Cluster) the pod joins its fleet through Redis (RedisDirectory;
the resume key file is then required: every pod must verify the tokens any pod
issued). Without it the pod serves alone (LocalDirectory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..config import AgentConfig
from .auth import Authenticator
from .directory import LocalDirectory, PodIdentity
from .gate import SessionGate
from .keys import AgentKeys
from .quotas import LocalQuotas, QuotaStore, RedisQuotas
from .redis_client import RedisConnection, connect
from .redis_directory import DirectoryTuning, RedisDirectory
from .revision_stats import RevisionTally
from .tokens import ResumeTokens


class DirectorySettings(Protocol):
    """What the factory reads from agent_pod.settings.PodSettings."""

    pod_name: str
    revision: str
    resume_key_file: Path | None

    @property
    def redis_connection(self) -> RedisConnection | None: ...


def token_ttl_seconds(config: AgentConfig, tuning: DirectoryTuning) -> float:
    """A token outlives the longest call plus the time to connect and to resume it."""
    return config.session.max_duration_seconds + tuning.reservation_seconds + tuning.resume_window_seconds


def build_directory(
    settings: DirectorySettings,
    config: AgentConfig,
    identity: PodIdentity | None = None,
    tuning: DirectoryTuning | None = None,
    revision_tally: RevisionTally | None = None,
) -> RedisDirectory | LocalDirectory:
    """``identity`` may still get its addresses filled in until ``start()`` (ports bound late).
    ``revision_tally``: the pod's call counts, added to its revision's totals in Redis (a pod
    without Redis keeps them to itself)."""
    identity = identity or PodIdentity(name=settings.pod_name, revision=settings.revision)
    tuning = tuning or DirectoryTuning(epsilon=config.session.placement_epsilon)
    ttl = token_ttl_seconds(config, tuning)
    key_file = settings.resume_key_file
    redis = settings.redis_connection
    if redis is None:
        tokens = ResumeTokens.from_file(key_file, ttl) if key_file else ResumeTokens.ephemeral(ttl)
        return LocalDirectory(identity, tokens, config.sessions_per_pod, tuning.resume_window_seconds)
    if key_file is None:
        raise ValueError(
            "VOICEFLEET_RESUME_KEY_FILE is required with Redis: every pod of the fleet "
            "must verify the resume tokens the others issue"
        )
    return RedisDirectory(
        connect(redis),
        AgentKeys(config.namespace, config.agent),
        identity,
        config.sessions_per_pod,
        ResumeTokens.from_file(key_file, ttl),
        prompt_id=config.prompt_id,
        tuning=tuning,
        revision_tally=revision_tally,
    )


def build_gate(
    config: AgentConfig, directory: RedisDirectory | LocalDirectory, credentials_dir: Path | None = None
) -> SessionGate:
    """Credentials and tenant quotas in front of ``directory`` (quotas in the same Redis)."""
    spec = config.auth
    auth = Authenticator.from_files(
        spec,
        issuer=f"voicefleet:{config.namespace}/{config.agent}",
        browser_key=directory.tokens.derive_key("browser keys v1"),
        credentials_dir=credentials_dir,
    )
    quotas: QuotaStore
    if isinstance(directory, RedisDirectory):
        quotas = RedisQuotas(directory.redis, directory.keys, spec, directory.tokens.ttl_seconds)
    else:
        quotas = LocalQuotas(spec)
    return SessionGate(spec, auth, quotas)
