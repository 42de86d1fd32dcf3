"""The VoiceAgent custom resource: spec and status models.

The CRD's OpenAPI schema is generated from these models (see crdgen.py), so the
API server and the operator validate against the same definition.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from agent_pod.config import (
    DEFAULT_PROMPT,
    AuthSpec,
    Model,
    PipelineSpec,
    PromptSpec,
    RedisSpec,
    SecretKeyRef,
    SessionSpec,
    ToolSpec,
    TransportSpec,
)

GROUP = "voicefleet.io"
VERSION = "v1alpha1"
KIND = "VoiceAgent"
PLURAL = "voiceagents"
DEFAULT_IMAGE = "ghcr.io/voicefleet/voicefleet:0.1.0"  # the one image of the Dockerfile


class AutoscalingSpec(Model):
    """Buffer autoscaling on live sessions: replicas = ceil((sessions + buffer) / sessionsPerPod)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
                }
            ]
        }
    )
    enabled: bool = Field(default=False, description="Let the operator set replicas from live sessions.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Lower bound of replicas.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Upper bound of replicas.")
    sessions_per_pod: int = Field(default=20, ge=1, le=1000, description="Live sessions one pod takes.")
    buffer_sessions: int = Field(
        default=0, ge=0, le=100000, description="Free session slots kept ready for new calls."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Scale down only to the highest recommendation of this window.",
    )


class ResourceRequirements(Model):
    requests: dict[str, int | str] = Field(
        default_factory=dict, description="Minimum resources (cpu, memory)."
    )
    limits: dict[str, int | str] = Field(default_factory=dict, description="Maximum resources (cpu, memory).")


class VoiceAgentSpec(Model):
    """Desired state of a fleet of voice agent pods."""

    replicas: int = Field(
        default=1, ge=0, le=1000, description="Pods when autoscaling is disabled (the scale subresource)."
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Session-based autoscaling."
    )
    image: str = Field(default=DEFAULT_IMAGE, min_length=1, max_length=512, description="Agent pod image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of the agent container."
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="Resources of the agent container."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods require.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Pod affinity rules (core/v1 Affinity).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pod tolerations (core/v1 Toleration).",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec, description="The audio pipeline.")
    prompt: PromptSpec = Field(
        default_factory=lambda: PromptSpec(inline=DEFAULT_PROMPT),
        description="System prompt.",
        json_schema_extra={"default": {"inline": DEFAULT_PROMPT}},
    )
    tools: list[ToolSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Tools the LLM may call.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    transport: TransportSpec = Field(default_factory=TransportSpec, description="Caller transports.")
    session: SessionSpec = Field(default_factory=SessionSpec, description="Per-call limits and drain.")
    redis: RedisSpec = Field(default_factory=RedisSpec, description="Session store.")
    auth: AuthSpec = Field(
        default_factory=AuthSpec, description="Credentials and tenant quotas of the session API."
    )
    resume_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the HMAC key for resume tokens; the operator makes one if unset.",
    )


class Condition(Model):
    model_config = ConfigDict(extra="ignore")
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


class VoiceAgentStatus(Model):
    """Observed state, written by the operator from what the cluster and Redis report."""

    model_config = ConfigDict(extra="ignore")
    replicas: int = Field(default=0, description="Pods of the agent's Deployment.")
    ready_replicas: int = Field(default=0, description="Ready pods.")
    active_sessions: int = Field(default=0, description="Live sessions (from the Redis registry).")
    capacity: int = Field(default=0, description="Sessions the ready, non-draining pods can take.")
    selector: str = Field(default="", description="Label selector of the pods (for the scale subresource).")
    prompt_version: str = Field(default="", description="Prompt version the pods run: label@content-hash.")
    desired_replicas: int = Field(default=0, description="Last decision of the operator's autoscaler.")
    observed_generation: int = Field(default=0, description="Generation of the spec last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing and Degraded.")
