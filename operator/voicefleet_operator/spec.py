"""The VoiceAgent custom resource: spec and status models.

The CRD's OpenAPI schema is generated from these models (see crdgen.py), so the
API server and the operator validate against the same definition.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from agent_pod.config import (
    DEFAULT_PROMPT,
    FLOW_TOOLS_RULE,
    AuditSpec,
    AuthSpec,
    ContextSpec,
    FlowSpec,
    KnowledgeSelectionSpec,
    McpServerSpec,
    MemorySpec,
    Model,
    PipelineSpec,
    Placement,
    PromptSpec,
    RecordingSpec,
    RedisSpec,
    ResourceRequirements,
    SecretKeyRef,
    SessionSpec,
    TelephonySpec,
    ToolSpec,
    TransferSpec,
    TransportSpec,
    check_flow,
)

GROUP = "voicefleet.io"
VERSION = "v1alpha1"
KIND = "VoiceAgent"
PLURAL = "voiceagents"
DEFAULT_IMAGE = "ghcr.io/voicefleet/voicefleet:0.1.0"  # the Dockerfile's agent target


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


class RolloutStep(Model):
    """One step of a canary: a share of new sessions, held for a while."""

    weight: int = Field(ge=1, le=100, description="Percent of NEW sessions placed on the canary revision.")
    pause_seconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description="Time at this weight before the next step (it also needs a successful measurement); "
        "absent: wait for a manual resume or promote.",
    )


class AnalysisSpec(Model):
    """How the canary is judged: a measurement every intervalSeconds over what the canary served since
    the last one. Thresholds left out are not checked."""

    interval_seconds: int = Field(default=30, ge=1, le=3600, description="Seconds between measurements.")
    min_turns: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="A measurement over fewer canary turns than this is no data: it never promotes.",
    )
    failure_limit: int = Field(
        default=0, ge=0, le=100, description="Failed measurements tolerated; one more rolls back."
    )
    inconclusive_limit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Inconclusive measurements tolerated; one more pauses the rollout for a human.",
    )
    consecutive_error_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Unreadable measurements in a row tolerated; one more rolls back.",
    )
    max_turn_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of canary turns that may end in an error."
    )
    max_response_p95_ms: float | None = Field(
        default=None,
        ge=1,
        le=600_000,
        description="Highest p95 of end of caller turn -> first agent audio, in milliseconds.",
    )
    max_tool_failure_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of tool calls that may fail."
    )
    max_divergence_flag_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of audited turns flagged as divergent."
    )
    max_interruption_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of agent turns the caller may interrupt."
    )
    max_p95_increase_over_stable: float | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Canary response p95 may be at most this times the stable revision's (1.5: 50% "
        "slower); a stable revision without data makes the comparison inconclusive.",
    )


class EvalGate(Model):
    """Eval suites run against the canary pods (at weight 0) before its first step."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.suites) && size(self.suites) > 0) "
                    "|| (has(self.packs) && size(self.packs) > 0)",
                    "message": "rollout.eval needs suites or packs",
                }
            ]
        }
    )
    suites: list[Annotated[str, Field(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]] = Field(
        default_factory=list,
        max_length=32,
        description="Names of ConfigMaps in the VoiceAgent's namespace holding eval suite YAML "
        "(every key ending in .yaml is a suite file; docs/evals.md).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    packs: list[Literal["redteam"]] = Field(
        default_factory=list,
        max_length=8,
        description="Packs shipped with voicefleet to run as well: redteam (adversarial probes in ten "
        "categories, graded by rules).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    min_pass_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of eval cases that must pass; below it rolls back."
    )
    timeout_seconds: int = Field(
        default=600, ge=10, le=86400, description="An eval still running after this rolls back."
    )
    image: str | None = Field(
        default=None, min_length=1, max_length=512, description="Image of the eval Job; default: spec.image."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding an API key (or JWT) for the eval's calls, when spec.auth.required.",
    )

    @model_validator(mode="after")
    def _something_to_run(self) -> EvalGate:
        if not self.suites and not self.packs:
            raise ValueError("rollout.eval needs suites or packs")
        return self


_STEPS_INCREASE = "rollout.steps weights must increase strictly"
_EVAL_NEEDS_CANARY = "rollout.eval needs strategy canary"


def _default_steps() -> list[RolloutStep]:
    return [RolloutStep(weight=10, pause_seconds=300), RolloutStep(weight=50, pause_seconds=300)]


class RolloutSpec(Model):
    """How a new revision (a change of prompt, pipeline or tools) reaches the fleet."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.strategy == 'canary' || !has(self.eval)",
                    "message": _EVAL_NEEDS_CANARY,
                    "fieldPath": ".eval",
                }
            ]
        }
    )
    strategy: Literal["rolling", "canary"] = Field(
        default="rolling",
        description="rolling: every pod rolls to the new revision; canary: it runs beside the stable one "
        "and takes a growing share of new sessions while it is analysed.",
    )
    steps: list[RolloutStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Canary steps in order; after the last one passes the canary is promoted, whatever "
        "its weight.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # isSorted allows equal neighbours; exists_one forbids them.
                    "rule": "self.map(s, s.weight).isSorted() "
                    "&& self.all(s, self.exists_one(t, t.weight == s.weight))",
                    "message": _STEPS_INCREASE,
                }
            ]
        },
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="How the canary is judged.")
    eval: EvalGate | None = Field(default=None, description="Eval suites the canary must pass first.")
    ready_timeout_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="Canary pods not Ready this long after they were asked for (an image that cannot be "
        "pulled, a crash loop) roll the canary back.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RolloutSpec:
        for i in range(1, len(self.steps)):
            if self.steps[i].weight <= self.steps[i - 1].weight:
                raise ValueError(
                    f"{_STEPS_INCREASE}: steps[{i}].weight {self.steps[i].weight} "
                    f"after {self.steps[i - 1].weight}"
                )
        if self.eval is not None and self.strategy != "canary":
            raise ValueError(_EVAL_NEEDS_CANARY)
        return self


class VoiceAgentSpec(Placement):
    """Desired state of a fleet of voice agent pods."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [FLOW_TOOLS_RULE]})
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
    # Tool orchestration layer (docs/tools.md).
    mcp_servers: list[McpServerSpec] = Field(
        default_factory=list,
        max_length=16,
        description="MCP servers (Streamable HTTP) whose tools the LLM may call, beside tools.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    transport: TransportSpec = Field(default_factory=TransportSpec, description="Caller transports.")
    telephony: TelephonySpec = Field(
        default_factory=TelephonySpec, description="Phone calls via carriers (docs/telephony.md)."
    )
    session: SessionSpec = Field(default_factory=SessionSpec, description="Per-call limits and drain.")
    redis: RedisSpec = Field(default_factory=RedisSpec, description="Session store.")
    auth: AuthSpec = Field(
        default_factory=AuthSpec, description="Credentials and tenant quotas of the session API."
    )
    resume_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the HMAC key for resume tokens; the operator makes one if unset.",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How a new revision reaches the fleet (docs/rollouts.md)."
    )
    # Conversation engine: structured memory and the context budget (docs/context.md).
    memory: MemorySpec = Field(
        default_factory=MemorySpec, description="Structured memory blocks, their writers and persistence."
    )
    context: ContextSpec = Field(
        default_factory=ContextSpec, description="Token budget and summaries of each LLM request's context."
    )
    flow: FlowSpec | None = Field(
        default=None,
        description="Conversation graph of specialist nodes with handoffs (docs/flows.md); absent: one "
        "agent with spec.prompt and spec.tools.",
    )

    @model_validator(mode="after")
    def _flow_fits_tools(self) -> VoiceAgentSpec:
        check_flow(self.flow, self.tools)
        return self

    transfer: TransferSpec | None = Field(
        default=None,
        description="Live calls may be transferred to other VoiceAgents of the namespace that share this "
        "agent's Redis (docs/transfer.md).",
    )
    audit: AuditSpec = Field(
        default_factory=AuditSpec,
        description="A verifiable audit trail per call: hash-chained, signed, PII redacted (docs/audit.md).",
    )
    recording: RecordingSpec = Field(
        default_factory=RecordingSpec,
        description="Dual-channel call recordings on a volume or in an S3-compatible bucket, with "
        "retention (docs/recordings.md).",
    )
    knowledge: KnowledgeSelectionSpec | None = Field(
        default=None,
        description="KnowledgeBases the calls search, as a tool and/or a context block; absent: none.",
    )


class Condition(Model):
    model_config = ConfigDict(extra="ignore")
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


RolloutPhase = Literal["Stable", "Evaluating", "Progressing", "Paused", "Promoting", "RolledBack"]
MeasurementResult = Literal["successful", "failed", "inconclusive", "no_data", "error"]
PauseReason = Literal["manual", "inconclusive", "no_data"]


class RolloutStatus(Model):
    """Where the rollout of a new revision stands; persisted so that a restarted operator resumes it.
    Times are epoch seconds. The counters are those of the current (or last) canary."""

    model_config = ConfigDict(extra="ignore")
    phase: RolloutPhase = Field(
        default="Stable", description="Stable, Evaluating, Progressing, Paused, Promoting or RolledBack."
    )
    stable_revision: str = Field(default="", description="Revision of the stable pods.")
    canary_revision: str = Field(default="", description="Revision of the canary pods; empty: no canary.")
    step: int = Field(default=0, description="Index of the current canary step.")
    weight: int = Field(default=0, description="Percent of new sessions placed on the canary.")
    step_started_at: float | None = Field(
        default=None, description="When the current step's weight was set; empty while pods start."
    )
    last_measured_at: float | None = Field(default=None, description="When the last measurement was taken.")
    successful: int = Field(default=0, description="Successful measurements.")
    failed: int = Field(default=0, description="Failed measurements.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements (since the last resume).")
    no_data: int = Field(default=0, description="Measurements with too few canary turns to judge.")
    consecutive_errors: int = Field(default=0, description="Unreadable measurements in a row.")
    step_successful: int = Field(default=0, description="Successful measurements in the current step.")
    last_result: MeasurementResult | None = Field(
        default=None, description="Result of the last measurement in the current step."
    )
    pause_reason: PauseReason | None = Field(
        default=None, description="Why the rollout is Paused: manual, inconclusive or no_data."
    )
    eval_started_at: float | None = Field(default=None, description="When the eval Job was started.")
    waiting_since: float | None = Field(
        default=None, description="Since when the canary pods have been awaited (None: they are ready)."
    )
    eval_pass_rate: float | None = Field(default=None, description="Pass rate of the canary's eval.")
    message: str = Field(default="", description="The last decision, in plain words.")
    failed_revision: str = Field(
        default="", description="A rolled-back revision; not tried again until the spec changes."
    )


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
    rollout: RolloutStatus = Field(default_factory=RolloutStatus, description="Canary rollout of a revision.")
