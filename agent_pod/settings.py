"""Pod settings: the environment the operator renders, plus the AgentConfig file it points to."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import AgentConfig
from .sessions.redis_client import RedisConnection


class PodSettings(BaseSettings):
    """Everything a pod reads from its environment (VOICEFLEET_*)."""

    model_config = SettingsConfigDict(env_prefix="VOICEFLEET_", extra="ignore")

    config: Path | None = Field(default=None, description="Path of the AgentConfig JSON; None: the default.")
    pod_name: str = "local"
    pod_ip: str = ""
    namespace: str = "default"
    revision: str = ""
    advertise_host: str = Field(
        default="", description="Address given to clients; default POD_IP or bind host."
    )
    bind_host: str = "0.0.0.0"
    redis_url: str | None = None
    # Redis behind Sentinel: the sentinels (host:port, comma-separated) and the master's name.
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_sentinel_password: str | None = None
    redis_password: str | None = None
    redis_cluster: bool = False
    redis_tls: bool = False
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    resume_key_file: Path | None = None
    credentials_dir: Path | None = None
    audit_dir: Path | None = Field(default=None, description="Where call audit logs are written.")
    audit_key_file: Path | None = Field(
        default=None, description="The Ed25519 key audit heads are signed with."
    )
    log_format: Literal["json", "text"] = "json"

    def load_config(self) -> AgentConfig:
        if self.config is None:
            return AgentConfig()
        return AgentConfig.model_validate_json(self.config.read_text())

    @property
    def redis_connection(self) -> RedisConnection | None:
        """Where the fleet's Redis is; None: the pod serves alone."""
        sentinels = tuple(a.strip() for a in self.redis_sentinels.split(",") if a.strip())
        if not self.redis_url and not sentinels:
            return None
        return RedisConnection(
            url=self.redis_url or None,
            sentinels=sentinels,
            sentinel_master=self.redis_sentinel_master,
            sentinel_password=self.redis_sentinel_password or None,
            password=self.redis_password or None,
            cluster=self.redis_cluster,
            tls=self.redis_tls,
            tls_ca_file=str(self.redis_tls_ca_file) if self.redis_tls_ca_file else None,
            tls_cert_file=str(self.redis_tls_cert_file) if self.redis_tls_cert_file else None,
            tls_key_file=str(self.redis_tls_key_file) if self.redis_tls_key_file else None,
        )

    @property
    def public_host(self) -> str:
        return advertised_host(self.advertise_host, self.pod_ip, self.bind_host)


def advertised_host(advertise_host: str, pod_ip: str, bind_host: str) -> str:
    """The host clients dial: explicit setting, else the pod IP, else the bind host (loopback for 0.0.0.0)."""
    if advertise_host:
        return advertise_host
    if pod_ip:
        return pod_ip
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host
