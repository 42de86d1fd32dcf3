"""Configuration shared by the VoiceAgent custom resource and the agent pod.

The operator validates a VoiceAgent's spec with these models, and renders the
pod's part of it (``AgentConfig``) into the ConfigMap every agent pod reads.
Field names are camelCase on the wire (Kubernetes style) and snake_case in
Python. Descriptions become ``kubectl explain`` text through the CRD generator.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

DEFAULT_PROMPT = "You are a helpful voice assistant. Keep answers short."


class Model(BaseModel):
    """Base for every model that crosses a boundary: camelCase aliases, no unknown fields."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class Placement(Model):
    """Where a workload's pods may run: the scheduling fields of core/v1 PodSpec."""

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

    def pod_fields(self) -> dict[str, Any]:
        """The PodSpec fields that are set."""
        fields = {
            "nodeSelector": self.node_selector,
            "affinity": self.affinity,
            "tolerations": self.tolerations,
        }
        return {k: v for k, v in fields.items() if v}


class SecretKeyRef(Model):
    """A key of a Secret in the VoiceAgent's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")


class ConfigMapKeyRef(Model):
    """A key of a ConfigMap in the VoiceAgent's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the ConfigMap.")
    key: str = Field(default="prompt", min_length=1, max_length=253, description="Key inside the ConfigMap.")


_NO_LITERAL_KEYS: JsonDict = {
    "rule": "self.all(k, !(k.lowerAscii().contains('key') || k.lowerAscii().contains('secret') "
    "|| k.lowerAscii().contains('token') || k.lowerAscii().contains('password')))",
    "message": "options must not carry credentials; use credentialsSecretRef",
}


class ProviderChoice(Model):
    """One provider of a pipeline stage."""

    model: str = Field(default="", max_length=200, description="Model name, where the provider has several.")
    base_url: str = Field(
        default="",
        max_length=2048,
        pattern=r"^(https?://.+)?$",
        description="Endpoint of the provider's API (any OpenAI-compatible base URL for openai).",
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Provider-specific settings as strings (never credentials).",
        json_schema_extra={"x-kubernetes-validations": [_NO_LITERAL_KEYS]},
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key that holds the provider's API key; mounted into the pod, never logged.",
    )
    timeout_seconds: float = Field(
        default=10.0, ge=0.05, le=120, description="A call slower than this fails over to the next provider."
    )


class VADProvider(ProviderChoice):
    provider: Literal["silero", "webrtc", "energy"] = Field(
        default="silero", description="silero (ONNX model shipped in the package), webrtc, or energy."
    )


class STTProvider(ProviderChoice):
    provider: Literal["pocketsphinx", "deepgram", "openai", "synthetic"] = Field(
        default="pocketsphinx",
        description="pocketsphinx (offline), deepgram (live streaming), openai (transcriptions API), "
        "or synthetic (zero-latency, for benchmarks).",
    )
    language: str = Field(default="en", max_length=16, description="BCP-47 language of the caller.")
    vocabulary: list[str] = Field(
        default_factory=list,
        max_length=500,
        description="Domain words and phrases; restrict or bias recognition where the provider can.",
    )


class LLMProvider(ProviderChoice):
    provider: Literal["openai", "scripted"] = Field(
        default="scripted",
        description="openai (chat completions with tools; any OpenAI-compatible base URL) or scripted "
        "(deterministic, offline).",
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(default=300, ge=1, le=16384, description="Upper bound of tokens per answer.")


class TTSProvider(ProviderChoice):
    provider: Literal["espeak", "openai", "deepgram", "synthetic"] = Field(
        default="espeak",
        description="espeak (espeak-ng, offline), openai, deepgram, or synthetic (zero latency, benchmarks).",
    )
    voice: str = Field(default="", max_length=100, description="Voice name of the provider.")


def _fallback_rule(stage: str) -> JsonDict:
    return {
        "rule": "!has(self.fallback) || self.fallback.all(f, f.provider != self.provider)",
        "message": f"pipeline.{stage}.fallback must not repeat the primary provider",
    }


class VADStage(VADProvider):
    """Voice activity detection."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_fallback_rule("vad")]})
    threshold: float = Field(default=0.5, ge=0.05, le=0.99, description="Speech probability threshold.")
    min_speech_ms: int = Field(
        default=200, ge=20, le=5000, description="Speech shorter than this is noise: it never starts a turn."
    )
    min_silence_ms: int = Field(
        default=400, ge=60, le=5000, description="Silence that ends the caller's turn."
    )
    fallback: list[VADProvider] = Field(default_factory=list, max_length=4, description="Tried in order.")


class STTStage(STTProvider):
    """Streaming speech-to-text."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_fallback_rule("stt")]})
    fallback: list[STTProvider] = Field(default_factory=list, max_length=4, description="Tried in order.")


class LLMStage(LLMProvider):
    """The language model that answers, with tool calling."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_fallback_rule("llm")]})
    fallback: list[LLMProvider] = Field(default_factory=list, max_length=4, description="Tried in order.")


class TTSStage(TTSProvider):
    """Streaming text-to-speech."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_fallback_rule("tts")]})
    fallback: list[TTSProvider] = Field(default_factory=list, max_length=4, description="Tried in order.")


# A cancel phrase or backchannel: words, matched case- and punctuation-insensitively.
_Phrase = Annotated[str, Field(min_length=1, max_length=100, pattern=r"[A-Za-z0-9]")]


class BargeInSpec(Model):
    """How the caller interrupts the agent."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.cancelPhrases) || !has(self.backchannels) || "
                    "self.cancelPhrases.all(p, "
                    "!self.backchannels.exists(b, b.lowerAscii().trim() == p.lowerAscii().trim()))",
                    "message": "a phrase cannot be both in cancelPhrases and backchannels",
                }
            ]
        }
    )

    enabled: bool = Field(default=True, description="Caller speech while the agent speaks stops the agent.")
    min_speech_ms: int = Field(
        default=300,
        ge=40,
        le=5000,
        description="Caller speech this long while the agent speaks interrupts it (shorter noise does not).",
    )
    # Hotwords, backchannels and false interruptions (see docs/interruptions.md).
    cancel_phrases: list[_Phrase] = Field(
        default_factory=lambda: ["stop", "cancel", "wait", "hold on"],
        max_length=50,
        description="Said alone while the agent speaks, these stop it even when shorter than minSpeechMs, "
        "and add no turn: the agent stops and listens.",
    )
    backchannels: list[_Phrase] = Field(
        default_factory=lambda: ["uh-huh", "mm-hmm", "okay", "right", "yeah", "sure"],
        max_length=50,
        description="Acknowledgements: said alone while the agent speaks, they neither interrupt it nor "
        "become a turn.",
    )
    cancel_min_speech_ms: int = Field(
        default=120,
        ge=20,
        le=5000,
        description="Caller sound shorter than this while the agent speaks is not transcribed (a click or "
        "a breath must not read as a cancel phrase).",
    )
    phrase_max_ms: int = Field(
        default=1000,
        ge=100,
        le=5000,
        description="Caller speech longer than this is never taken for a backchannel or a cancel phrase, "
        "whatever its transcript: an STT restricted to a vocabulary hears long speech as its phrases.",
    )
    resume_false_interruptions: bool = Field(
        default=True,
        description="At minSpeechMs of caller speech the agent pauses instead of stopping; it stops once "
        "the transcript says speech or a cancel phrase, and resumes where it paused when it says a "
        "backchannel, noise or nothing.",
    )
    false_interruption_timeout_ms: int = Field(
        default=2000,
        ge=100,
        le=10000,
        description="A pause with no transcript to act on after this long resumes the agent.",
    )

    @model_validator(mode="after")
    def _phrases_distinct(self) -> BargeInSpec:
        both = {p.lower().strip() for p in self.cancel_phrases} & {
            p.lower().strip() for p in self.backchannels
        }
        if both:
            raise ValueError(
                f"pipeline.bargeIn: {sorted(both)} both in cancelPhrases and backchannels; keep it in one"
            )
        return self


class ComplianceSpec(Model):
    """The audit of what the caller heard against what the transcript records."""

    audit: bool = Field(
        default=True,
        description="Check each agent turn's played audio off the call path (offline pocketsphinx): forced "
        "alignment against the recorded played text names the words the audio does not say "
        "(docs/compliance.md). Not run with the synthetic STT.",
    )
    divergence_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="For turns the aligner cannot check (digits, words missing from its dictionary): the "
        "open re-transcription's word error rate above which the turn is flagged (a log line and "
        "voicefleet_transcript_divergence_flagged_total). The open re-transcriber is rough, so 0.5 "
        "flags gross mismatches only.",
    )
    retranscribe: Literal["needed", "always"] = Field(
        default="needed",
        description="When to re-transcribe a turn's audio openly (~7x the check's CPU) for its record's "
        "retranscript and divergence: needed = only turns the aligner cannot check and flagged turns (a "
        "diagnostic); always = every audited turn.",
    )


class ToolSpeechSpec(Model):
    """What the agent says around tool calls (docs/speech-gate.md)."""

    mode: Literal["hold", "stream"] = Field(
        default="hold",
        description="hold: in an LLM round that offers tools, its text waits until the model has decided "
        '(a preamble such as "I\'ve booked that" is never spoken before the tool runs); rounds without '
        "tools stream as always. stream: every round's text goes to TTS as it arrives.",
    )
    preamble: Literal["speak", "drop"] = Field(
        default="speak",
        description="In hold mode, the text of a round that ends with tool calls: spoken before the tools "
        "run, or dropped (never spoken, not in the history).",
    )
    filler_after_ms: int = Field(
        default=800,
        ge=50,
        le=10000,
        description="Tools of a round still running after this long: the next filler phrase is spoken.",
    )
    fillers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description='Filler phrases spoken in turn while slow tools run (e.g. "One moment."); empty: none.',
    )


class SupervisorSpec(Model):
    """A compliance check of every draft reply before it is spoken: a regex deny list, then an optional
    supervisor LLM within a latency budget (docs/speech-gate.md)."""

    llm: LLMProvider | None = Field(
        default=None, description="The supervisor model; absent: only the regex rules are checked."
    )
    prompt: str = Field(
        default="You are a compliance supervisor for a voice agent. Veto anything that gives legal, "
        "medical or financial advice, makes promises the agent cannot keep, or is abusive.",
        min_length=1,
        max_length=16384,
        description="The supervisor's instructions; the verdict format is appended by the pod.",
    )
    budget_ms: int = Field(
        default=400,
        ge=10,
        le=10000,
        description="Longest wait for a verdict on one piece of the reply; later, onTimeout applies.",
    )
    on_timeout: Literal["allow", "block"] = Field(
        default="allow",
        description="A verdict late or malformed: allow speaks the draft, block vetoes it.",
    )
    rules: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list,
        max_length=100,
        description="Regular expressions (Python syntax, case-insensitive); a draft matching any is vetoed "
        "without asking the LLM.",
    )
    safe_line: str = Field(
        default="Sorry, I can't help with that.",
        max_length=500,
        description="Spoken instead of a vetoed draft (and the rest of that turn); empty: nothing.",
    )

    @model_validator(mode="after")
    def _rules_compile(self) -> SupervisorSpec:
        for i, rule in enumerate(self.rules):
            try:
                re.compile(rule)
            except re.error as exc:
                raise ValueError(f"supervisor.rules[{i}] is not a valid regular expression: {exc}") from None
        return self


class PipelineSpec(Model):
    """The cascaded audio pipeline: VAD -> STT -> LLM -> TTS."""

    vad: VADStage = Field(default_factory=VADStage, description="Voice activity detection.")
    stt: STTStage = Field(default_factory=STTStage, description="Speech-to-text.")
    llm: LLMStage = Field(default_factory=LLMStage, description="Language model.")
    tts: TTSStage = Field(default_factory=TTSStage, description="Text-to-speech.")
    barge_in: BargeInSpec = Field(default_factory=BargeInSpec, description="Interruption by the caller.")
    compliance: ComplianceSpec = Field(
        default_factory=ComplianceSpec, description="Audit of played audio against the transcript."
    )
    tool_speech: ToolSpeechSpec = Field(
        default_factory=ToolSpeechSpec, description="Holding, preambles and fillers around tool calls."
    )
    supervisor: SupervisorSpec | None = Field(
        default=None, description="Compliance check of each draft reply before TTS; absent: none."
    )


class ResourceRequirements(Model):
    """Container resources (core/v1 ResourceRequirements, without claims)."""

    requests: dict[str, int | str] = Field(
        default_factory=dict, description="Minimum resources (cpu, memory)."
    )
    limits: dict[str, int | str] = Field(default_factory=dict, description="Maximum resources (cpu, memory).")


class PromptSpec(Model):
    """The system prompt: inline text or a ConfigMap key, plus a version label."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.inline) != has(self.configMapRef)",
                    "message": "prompt needs exactly one of inline or configMapRef",
                }
            ]
        }
    )
    inline: str | None = Field(default=None, max_length=65536, description="The prompt text.")
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="ConfigMap key holding the prompt."
    )
    version: str = Field(
        default="",
        max_length=63,
        pattern=r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?$",
        description="Human version label; the content hash is always recorded too.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> PromptSpec:
        if (self.inline is None) == (self.config_map_ref is None):
            raise ValueError("prompt needs exactly one of inline or configMapRef")
        return self


class HTTPEndpoint(Model):
    url: str = Field(max_length=2048, pattern=r"^https?://.+", description="URL the tool call is sent to.")
    method: Literal["POST", "PUT", "GET"] = Field(
        default="POST", description="HTTP method (arguments as JSON body, or query for GET)."
    )
    headers_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a JSON object of extra headers (for example Authorization).",
    )


# --- tool orchestration layer (docs/tools.md): breakers, concurrency, MCP servers ---


class BreakerSpec(Model):
    """The per-tool circuit breaker of each pod."""

    failure_threshold: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed calls (5xx, timeouts, connection errors, after retries) that open "
        "the breaker.",
    )
    cooldown_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="How long an open breaker answers calls with an error without sending them; then one "
        "trial call decides (half-open).",
    )


class ConcurrencySpec(Model):
    """How many calls of one tool a pod runs at once."""

    limit: int = Field(default=16, ge=1, le=10000, description="Calls of the tool in flight per pod.")
    queue_timeout_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="A call beyond the limit waits this long for a slot, then gets an error.",
    )


class McpServerSpec(Model):
    """An MCP server (Streamable HTTP) whose tools the LLM may call."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="Name of the server.")
    url: str = Field(
        max_length=2048, pattern=r"^https?://.+", description="Streamable HTTP endpoint (e.g. .../mcp)."
    )
    headers_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a JSON object of extra headers (for example Authorization).",
    )
    allow_tools: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Tools of the server offered to the LLM; empty: all of them.",
    )
    confirm_tools: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Tools that run only after the caller confirms (see tools[].confirm).",
    )
    side_effects: bool = Field(
        default=True,
        description="Tools change something (idempotency keys apply) unless the server marks them "
        "read-only (readOnlyHint).",
    )
    timeout_seconds: float = Field(default=10.0, ge=0.1, le=120, description="Per attempt.")
    retries: int = Field(default=1, ge=0, le=5, description="Extra attempts after a failure or timeout.")
    breaker: BreakerSpec = Field(default_factory=BreakerSpec, description="Per-tool circuit breaker.")
    concurrency: ConcurrencySpec = Field(
        default_factory=ConcurrencySpec, description="Per-tool concurrency limit of each pod."
    )


class ToolSpec(Model):
    """A tool the LLM may call, served by an HTTP endpoint."""

    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", description="Name the LLM calls the tool by."
    )
    description: str = Field(min_length=1, max_length=1024, description="What the tool does, for the LLM.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["type"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["object"],
                    "description": "Arguments are always an object.",
                }
            },
        },
    )
    endpoint: HTTPEndpoint = Field(description="Where the call is executed.")
    timeout_seconds: float = Field(default=5.0, ge=0.1, le=60, description="Per attempt.")
    retries: int = Field(default=1, ge=0, le=5, description="Extra attempts after a failure or timeout.")
    max_argument_repairs: int = Field(
        default=2, ge=0, le=5, description="Times invalid arguments are sent back to the LLM to correct."
    )
    # Tool orchestration layer (docs/tools.md).
    side_effects: bool | None = Field(
        default=None,
        description="The call changes something: it carries an Idempotency-Key and its result is replayed "
        "instead of sent twice. Default: true for POST and PUT, false for GET.",
    )
    confirm: bool = Field(
        default=False,
        description="Sensitive: the first call is not run; the caller is asked to confirm and a yes in "
        "their next turn runs it.",
    )
    idempotency_ttl_seconds: int = Field(
        default=86400, ge=60, le=604800, description="How long a successful result is replayed."
    )
    breaker: BreakerSpec = Field(default_factory=BreakerSpec, description="Per-tool circuit breaker.")
    concurrency: ConcurrencySpec = Field(
        default_factory=ConcurrencySpec, description="Per-tool concurrency limit of each pod."
    )

    @property
    def has_side_effects(self) -> bool:
        return self.side_effects if self.side_effects is not None else self.endpoint.method != "GET"


class PortRange(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "udpPortRange.min must be <= udpPortRange.max"}
            ]
        }
    )
    min: int = Field(default=40000, ge=1024, le=65535, description="First UDP port.")
    max: int = Field(default=40999, ge=1024, le=65535, description="Last UDP port.")


class WebRTCSpec(Model):
    enabled: bool = Field(default=True, description="Serve WebRTC (Opus) with HTTP signaling.")
    udp_port_range: PortRange = Field(default_factory=PortRange, description="UDP ports for media.")
    opus_complexity: int = Field(
        default=5,
        ge=0,
        le=10,
        description="Opus encoder complexity for agent audio. Encoding is most of a WebRTC call's CPU in "
        "the pod: at 50 calls, 10 (libopus' best) costs ~12% more pod CPU than 5, for speech that "
        "sounds the same at 32 kb/s.",
    )


class GRPCSpec(Model):
    enabled: bool = Field(default=True, description="Serve the bidirectional gRPC audio stream.")
    port: int = Field(default=50051, ge=1024, le=65535, description="gRPC port.")


class AudioSocketSpec(Model):
    """Asterisk AudioSocket over TCP: slin 8 kHz in 20 ms frames; the call's UUID is its key."""

    enabled: bool = Field(default=False, description="Serve AudioSocket calls on their own TCP port.")
    port: int = Field(default=9019, ge=1024, le=65535, description="AudioSocket TCP port.")
    new_calls: bool = Field(
        default=True,
        description="A UUID the pod does not know starts a new session; off: only UUIDs of calls this pod "
        "serves are accepted (reconnects).",
    )
    credential_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="API key (sessions:create) new AudioSocket calls are admitted with when auth requires "
        "a credential.",
    )


class TransportSpec(Model):
    """How callers reach the pods."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.webrtc.enabled || self.grpc.enabled",
                    "message": "transport needs at least one of webrtc or grpc enabled",
                }
            ]
        }
    )
    webrtc: WebRTCSpec = Field(default_factory=WebRTCSpec, description="WebRTC transport.")
    grpc: GRPCSpec = Field(default_factory=GRPCSpec, description="gRPC transport.")
    audio_socket: AudioSocketSpec = Field(
        default_factory=AudioSocketSpec, description="Asterisk AudioSocket transport (phone calls)."
    )
    http_port: int = Field(
        default=8080, ge=1024, le=65535, description="HTTP port: session API, signaling, web client, health."
    )
    metrics_port: int = Field(default=9090, ge=1024, le=65535, description="Prometheus /metrics port.")


CarrierName = Literal["twilio", "telnyx", "plivo", "vonage"]


class TelephonySpec(Model):
    """Phone calls over carriers' Media Streams WebSockets (docs/telephony.md)."""

    enabled: bool = Field(
        default=False,
        description="Serve the carrier webhooks and media streams under /v1/telephony/{carrier}/.",
    )
    carriers: list[CarrierName] = Field(
        default_factory=lambda: list(get_args(CarrierName)),
        max_length=4,
        description="Carriers whose webhook and stream are served.",
    )
    credential_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding an API key of this agent's session API keyring: the webhook creates "
        "each call's session with it (its tenant and quota). Needed when spec.auth.required.",
    )
    twilio_auth_token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Twilio auth token; set, webhooks without a valid "
        "X-Twilio-Signature are refused with 403.",
    )
    telnyx_public_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Telnyx account's public key (base64); set, webhooks without "
        "a valid telnyx-signature-ed25519 are refused with 403.",
    )
    vonage_signature_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Vonage signature secret; set, webhooks without a valid signed "
        "Authorization JWT are refused with 403.",
    )
    plivo_auth_token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Plivo auth token; set, webhooks without a valid "
        "X-Plivo-Signature-V3 (and its nonce) are refused with 403.",
    )
    public_url: str = Field(
        default="",
        max_length=2048,
        pattern=r"^(https?://[^?#]+)?$",
        description="Base URL carriers call the webhook at (for signature checks behind an ingress); "
        "empty: the URL the request arrived at.",
    )
    stream_url_template: str = Field(
        default="",
        max_length=2048,
        pattern=r"^(wss?://.+)?$",
        description="Media stream URL handed to carriers, with {pod} and {carrier} placeholders; empty: "
        "the chosen pod's own HTTP address as ws://.",
    )
    start_timeout_seconds: float = Field(
        default=5.0, ge=0.5, le=60.0, description="A stream that sends no start event within this is closed."
    )
    mark_interval_ms: int = Field(
        default=100,
        ge=20,
        le=1000,
        multiple_of=20,
        description="Agent audio between marks; what counts as played at a barge-in is exact to this.",
    )
    max_bad_messages: int = Field(
        default=100,
        ge=1,
        le=100000,
        description="Refused messages a live stream may send before it is closed (each gets an error).",
    )


class MigrationSpec(Model):
    """Moving live calls off a draining pod to another ready pod, at a quiet turn boundary."""

    enabled: bool = Field(
        default=True,
        description="A draining pod moves its live calls instead of waiting for them to end.",
    )
    quiet_wait_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description=(
            "Longest wait for a quiet moment (neither side speaking, no tool call running); a call "
            "without one stays on the pod until the drain deadline."
        ),
    )
    follow_timeout_seconds: float = Field(
        default=10.0,
        ge=0.5,
        le=120,
        description="A caller that has not followed the move by then stays on the pod.",
    )
    max_parallel: int = Field(default=10, ge=1, le=1000, description="Calls one pod moves at the same time.")
    cross_revision: bool = Field(
        default=True,
        description=(
            "Calls may move to pods of another revision (a rollout then empties old pods in seconds); "
            "false keeps each call on its revision."
        ),
    )


class InputLimitsSpec(Model):
    """What one caller can make a pod hold or do, whatever it sends (docs/limits.md)."""

    max_text_chars: int = Field(
        default=4000,
        ge=1,
        le=16384,
        description="Typed caller input longer than this is refused with an error; the call goes on.",
    )
    max_utterance_seconds: float = Field(
        default=60.0,
        ge=1,
        le=600,
        description=(
            "Caller speech (or noise) longer than this is cut: what was said so far is transcribed and "
            "answered, the rest is heard as the next turn. Bounds the audio a call holds for recognition."
        ),
    )
    audio_burst_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=60,
        description=(
            "How far ahead of real time a caller may send audio (a client that buffers a little). "
            "Audio beyond it is dropped with an error; a caller that keeps flooding is cut off."
        ),
    )
    max_history_turns: int = Field(
        default=200,
        ge=1,
        le=10000,
        description="Caller turns the conversation keeps (for the LLM and the resume snapshot); older "
        "turns are dropped, whole.",
    )
    max_history_chars: int = Field(
        default=100_000,
        ge=1000,
        le=10_000_000,
        description="Characters of history kept (message texts and tool arguments); older turns are "
        "dropped, whole, beyond it.",
    )


class DtmfSpec(Model):
    """Keypad digits of a phone call as caller input (AudioSocket and Media Streams DTMF)."""

    terminator: str = Field(
        default="#",
        pattern=r"^[0-9*#ABCD]?$",
        description="The key that ends an input early (not part of it; pressed alone it is the input). "
        "Empty: none.",
    )
    inter_digit_timeout_seconds: float = Field(
        default=2.0,
        ge=0.1,
        le=30.0,
        description="Digits collected so far become the caller's input after this long without another.",
    )
    max_digits: int = Field(
        default=16, ge=1, le=64, description="An input is complete with this many digits."
    )
    interrupt_on_first_digit: bool = Field(
        default=True,
        description="The first digit cuts the agent off as speech does; else the agent is cut off when the "
        "input is complete, like a typed turn.",
    )


class SessionSpec(Model):
    """Limits of one call."""

    max_duration_seconds: int = Field(
        default=3600, ge=10, le=86400, description="A call is ended after this."
    )
    idle_timeout_seconds: int = Field(
        default=60, ge=5, le=3600, description="A call without caller audio or text for this long is ended."
    )
    drain_timeout_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        description="On shutdown a pod serves its live calls this long (terminationGracePeriodSeconds).",
    )
    placement_epsilon: float = Field(
        default=0.25,
        ge=0.0,
        le=10.0,
        description="Bounded-load placement: no pod takes a session above (1 + epsilon) x average load.",
    )
    migration: MigrationSpec = Field(
        default_factory=MigrationSpec, description="Live call migration when a pod drains."
    )
    limits: InputLimitsSpec = Field(
        default_factory=InputLimitsSpec, description="Bounds on what one caller can make a pod hold or do."
    )
    dtmf: DtmfSpec = Field(
        default_factory=DtmfSpec, description="How keypad digits are collected into caller input."
    )


SentinelAddress = Annotated[str, Field(max_length=260, pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")]


class RedisSentinelSpec(Model):
    """Redis behind Sentinel: the sentinels name the current master and follow its failovers."""

    master_name: str = Field(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$", description="Name the sentinels monitor."
    )
    addresses: list[SentinelAddress] = Field(
        min_length=1, max_length=16, description="host:port of each sentinel."
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the sentinels' password."
    )


class RedisTLSSpec(Model):
    """TLS to Redis (and to the sentinels): the CA that signed their certificates, and optionally a
    client certificate."""

    ca_secret_ref: SecretKeyRef = Field(description="Secret key holding the PEM CA bundle.")
    client_cert_secret_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="A kubernetes.io/tls Secret (tls.crt, tls.key) presented as the client certificate.",
    )


class RedisSpec(Model):
    """Where sessions are pinned: one server (url / secretRef), a Sentinel-managed master, or a Redis
    Cluster (url / secretRef naming a seed node), optionally over TLS."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.url) && has(self.secretRef))",
                    "message": "redis takes url or secretRef, not both",
                },
                {
                    "rule": "!has(self.sentinel) || (!has(self.url) && !has(self.secretRef))",
                    "message": "redis.sentinel names the master: leave out redis.url and redis.secretRef",
                    "fieldPath": ".sentinel",
                },
                {
                    "rule": "!has(self.sentinel) || !has(self.cluster) || !self.cluster",
                    "message": "redis.cluster and redis.sentinel cannot be combined",
                    "fieldPath": ".cluster",
                },
                {
                    "rule": "!has(self.cluster) || !self.cluster || has(self.url) || has(self.secretRef)",
                    "message": "redis.cluster needs redis.url or redis.secretRef naming a seed node",
                    "fieldPath": ".cluster",
                },
                {
                    "rule": "!has(self.tls) || !has(self.url) || self.url.startsWith('rediss://')",
                    "message": "redis.tls needs a rediss:// redis.url",
                    "fieldPath": ".tls",
                },
            ]
        }
    )
    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^rediss?://[^:@/]*(:[0-9]+)?(/[0-9]+)?$",
        description="redis:// or rediss:// URL without credentials; default: the chart's in-cluster Redis.",
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the full redis:// URL."
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the password of the Redis servers (e.g. behind Sentinel).",
    )
    sentinel: RedisSentinelSpec | None = Field(default=None, description="Redis behind Sentinel.")
    cluster: bool = Field(default=False, description="Redis Cluster: url or secretRef names a seed node.")
    tls: RedisTLSSpec | None = Field(default=None, description="TLS with a CA from a Secret.")


ANONYMOUS_TENANT = "anonymous"
SCOPES = ("sessions:create", "sessions:resume", "keys:issue", "sessions:transfer", "memory:delete")
Scope = Literal["sessions:create", "sessions:resume", "keys:issue", "sessions:transfer", "memory:delete"]


class TenantQuota(Model):
    """What one tenant may hold and start across the whole fleet (enforced through Redis)."""

    max_concurrent_sessions: int = Field(
        default=100, ge=1, le=1_000_000, description="Sessions created or live at once, fleet-wide."
    )
    sessions_per_minute: int = Field(
        default=120, ge=1, le=1_000_000, description="New sessions per minute (token bucket refill rate)."
    )
    burst: int = Field(
        default=20, ge=1, le=100_000, description="New sessions allowed at once above the rate."
    )


JwtAlgorithm = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA", "HS256"]


class JwtSpec(Model):
    """JSON Web Tokens from an identity provider, verified by every pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.keysSecretRef) || has(self.jwksUrl)",
                    "message": "jwt needs keysSecretRef or jwksUrl",
                }
            ]
        }
    )
    keys_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the verification key: PEM public key(s), or an HS256 shared secret.",
    )
    jwks_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://", description="JWKS endpoint of the issuer."
    )
    issuer: str | None = Field(default=None, max_length=512, description="Required `iss` claim.")
    audience: str | None = Field(default=None, max_length=512, description="Required `aud` claim.")
    tenant_claim: str = Field(
        default="tenant", min_length=1, max_length=64, description="Claim naming the tenant."
    )
    algorithms: list[JwtAlgorithm] = Field(
        default_factory=lambda: list[JwtAlgorithm](["RS256", "ES256"]),
        min_length=1,
        description="Accepted signature algorithms.",
    )


class CorsSpec(Model):
    """Which web origins may call the session API and signaling from a browser."""

    allowed_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        max_length=64,
        description='Origins (scheme://host[:port]) allowed; "*" allows any. Credentials travel in headers, '
        "never cookies.",
    )


class AuthSpec(Model):
    """Who may create and resume sessions: API keys and/or JWTs, with per-tenant quotas."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.required || has(self.apiKeysSecretRef) || has(self.jwt)",
                    "message": "auth.required needs auth.apiKeysSecretRef or auth.jwt",
                }
            ]
        }
    )
    required: bool = Field(
        default=False,
        description="Creating a session (API or a stream without a session id) needs a credential.",
    )
    api_keys_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the API keyring (JSON: keys with id, tenant, scopes, sha256; "
        "see `voicefleet keys new`).",
    )
    jwt: JwtSpec | None = Field(default=None, description="JWT verification.")
    default_quota: TenantQuota = Field(
        default_factory=TenantQuota, description="Quota of every tenant that presents a credential."
    )
    tenant_quotas: dict[str, TenantQuota] = Field(
        default_factory=dict,
        max_length=1000,
        description="Quotas of named tenants (overrides the default). Callers without a credential (auth not "
        'required) are the tenant "anonymous": unlimited unless named here.',
    )
    browser_key_ttl_seconds: int = Field(
        default=300, ge=30, le=3600, description="Lifetime of short-lived keys minted for web pages."
    )
    cors: CorsSpec = Field(default_factory=CorsSpec, description="Browser origins.")

    def quota(self, tenant: str) -> TenantQuota | None:
        """None: the tenant is not limited."""
        if tenant in self.tenant_quotas:
            return self.tenant_quotas[tenant]
        return None if tenant == ANONYMOUS_TENANT else self.default_quota


# ---------------------------------------------------------------- memory and context (docs/context.md)

BlockLabel = Annotated[str, Field(max_length=63, pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class MemoryBlockSpec(Model):
    """A block of structured memory the LLM sees on every turn (like Letta's core-memory blocks)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.kind == 'slots' || !has(self.slots) || size(self.slots) == 0",
                    "message": "memory.blocks[].slots needs kind: slots",
                    "fieldPath": ".slots",
                },
                {
                    "rule": "!has(self.initial) || size(self.initial) <= self.limitChars",
                    "message": "memory.blocks[].initial is longer than limitChars",
                    "fieldPath": ".initial",
                },
            ]
        }
    )
    label: BlockLabel = Field(description="Name of the block (snake_case), as the LLM and writers see it.")
    description: str = Field(
        min_length=1, max_length=1024, description="What the block holds, shown to the LLM next to it."
    )
    kind: Literal["text", "slots"] = Field(
        default="text",
        description="text: free text replaced as a whole; slots: a JSON object of the named slots, "
        "updated slot by slot.",
    )
    slots: list[BlockLabel] = Field(
        default_factory=list,
        max_length=64,
        description="Slot names of a slots block (the only keys allowed).",
    )
    limit_chars: int = Field(
        default=2000,
        ge=16,
        le=100_000,
        description="Largest value in characters (slots: the JSON text); a write beyond it is refused "
        "with a reason, never truncated silently.",
    )
    read_only: bool = Field(default=False, description="Only the initial value: no writer may change it.")
    initial: str = Field(
        default="", max_length=100_000, description="Value at the start of a call (slots: a JSON object)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MemoryBlockSpec:
        if self.slots and self.kind != "slots":
            raise ValueError(f"memory block {self.label}: slots needs kind: slots")
        if len(self.initial) > self.limit_chars:
            raise ValueError(f"memory block {self.label}: initial is longer than limitChars")
        if self.kind == "slots" and self.initial:
            try:
                value = json.loads(self.initial)
            except ValueError as exc:
                raise ValueError(f"memory block {self.label}: initial is not JSON: {exc}") from None
            if not isinstance(value, dict) or (self.slots and set(value) - set(self.slots)):
                raise ValueError(f"memory block {self.label}: initial must be a JSON object of its slots")
        return self


class ToolMemoryWrite(Model):
    """A tool's result copied into a memory block after the turn (off the call path)."""

    tool: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", description="Name of the tool.")
    block: BlockLabel = Field(description="Label of the block written.")
    slot: BlockLabel | None = Field(
        default=None, description="Slot of a slots block to set; absent: the result's fields set slots."
    )
    field: str | None = Field(
        default=None, max_length=128, description="Top-level field of the JSON result; absent: all of it."
    )


LookupSource = Annotated[
    str, Field(max_length=140, pattern=r"^(transcript|metadata\.[A-Za-z0-9_.-]{1,128})$")
]


class MemoryLookup(ToolMemoryWrite):
    """A tool of ``tools`` called in the background (the lookup agent): its result is written into a block
    while the conversation goes on; no turn waits for it."""

    trigger: Literal["session_start", "caller_turn"] = Field(
        description="session_start: once, when the call starts; caller_turn: on each final caller transcript."
    )
    arguments: dict[str, LookupSource] = Field(
        default_factory=dict,
        max_length=16,
        description="Tool argument -> its value: transcript (the caller's words) or metadata.<field> "
        "(session metadata; a lookup whose field is missing is skipped).",
    )


class MemoryExtractionSpec(Model):
    """After each finished turn, an LLM updates the writable blocks from the last exchange (background)."""

    enabled: bool = Field(default=False, description="Run the extraction step after each turn.")
    llm: LLMProvider | None = Field(
        default=None, description="Provider of the extraction; absent: the pipeline's LLM (with fallbacks)."
    )


class MemoryPersistenceSpec(Model):
    """Memory kept across calls of the same caller, in Redis with a TTL."""

    caller_key_field: str = Field(
        min_length=1,
        max_length=128,
        description="Session metadata field that identifies the caller (for example caller_id); a session "
        "without it keeps its memory to itself.",
    )
    ttl_seconds: int = Field(
        default=30 * 86400,
        ge=60,
        le=400 * 86400,
        description="Memory of a caller not seen for this long is gone.",
    )


class MemorySpec(Model):
    """Structured memory: typed blocks, their writers, and optional persistence across calls."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.toolWrites) || self.toolWrites.all(w, has(self.blocks) && "
                    "self.blocks.exists(b, b.label == w.block && !b.readOnly))",
                    "message": "memory.toolWrites[].block must name a writable memory block",
                    "fieldPath": ".toolWrites",
                }
            ]
        }
    )

    blocks: list[MemoryBlockSpec] = Field(
        default_factory=list,
        max_length=16,
        description="Blocks the LLM sees on every turn.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["label"]},
    )
    tool_writes: list[ToolMemoryWrite] = Field(
        default_factory=list, max_length=16, description="Tool results mapped into blocks."
    )
    lookups: list[MemoryLookup] = Field(
        default_factory=list, max_length=8, description="Background tool lookups written into blocks."
    )
    extraction: MemoryExtractionSpec = Field(
        default_factory=MemoryExtractionSpec, description="LLM extraction of slots after each turn."
    )
    persistence: MemoryPersistenceSpec | None = Field(
        default=None, description="Keep writable blocks across calls of one caller (Redis, with a TTL)."
    )

    @model_validator(mode="after")
    def _writes_name_blocks(self) -> MemorySpec:
        blocks = {b.label: b for b in self.blocks}
        writes = [(f"toolWrites[{i}]", w) for i, w in enumerate(self.tool_writes)]
        writes += [(f"lookups[{i}]", w) for i, w in enumerate(self.lookups)]
        for where, write in writes:
            block = blocks.get(write.block)
            if block is None:
                raise ValueError(f"memory.{where}.block: no memory block {write.block!r}")
            if block.read_only:
                raise ValueError(f"memory.{where}.block: {write.block!r} is read-only")
            if write.slot is not None and (
                block.kind != "slots" or (block.slots and write.slot not in block.slots)
            ):
                raise ValueError(f"memory.{where}.slot: {write.slot!r} is not a slot of {write.block!r}")
        return self


class ContextSpec(Model):
    """The token budget of each LLM request (docs/context.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.targetTokens <= self.maxTokens",
                    "message": "context.targetTokens must be <= context.maxTokens",
                }
            ]
        }
    )
    max_tokens: int = Field(
        default=8000,
        ge=256,
        le=1_000_000,
        description="Hard budget of a request's context (estimated tokens): older turns are left out to stay "
        "within it. The system prompt and caller context are always sent.",
    )
    target_tokens: int = Field(
        default=6000,
        ge=128,
        le=1_000_000,
        description="Above this, turns older than keepLastTurns are summarised in the background.",
    )
    keep_last_turns: int = Field(
        default=6, ge=1, le=1000, description="Newest caller turns never summarised (sent verbatim)."
    )
    summarize: bool = Field(default=True, description="Summarise older turns instead of only dropping them.")
    summary_max_words: int = Field(default=150, ge=20, le=2000, description="Length bound of the summary.")

    @model_validator(mode="after")
    def _target_within_max(self) -> ContextSpec:
        if self.target_tokens > self.max_tokens:
            raise ValueError("context.targetTokens must be <= context.maxTokens")
        return self


# --- flows: a graph of nodes (specialist agents) the conversation moves through (docs/flows.md) ---------

FlowName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")]
ContextPolicy = Literal["full", "summary", "none"]


class FlowWhen(Model):
    """A condition on the JSON result of the tool that triggers a transition."""

    field: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="Dotted path into the result object, e.g. status or booking.confirmed.",
    )
    equals: str = Field(
        max_length=200,
        description='Value the field must have, compared as text: "true", "7", "confirmed".',
    )


class FlowTransition(Model):
    """A move to another node: taken after a tool's result (onTool) or chosen by the LLM (function)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.onTool) != has(self.function)",
                    "message": "a flow transition needs exactly one of onTool or function",
                },
                {
                    "rule": "!has(self.when) || has(self.onTool)",
                    "message": "flow transition when needs onTool",
                    "fieldPath": ".when",
                },
            ]
        }
    )
    to: FlowName = Field(description="Name of the node the conversation moves to.")
    on_tool: FlowName | None = Field(
        default=None, description="A call of this node tool that succeeds moves the conversation."
    )
    when: FlowWhen | None = Field(default=None, description="Only when the tool's result matches.")
    function: FlowName | None = Field(
        default=None,
        description="Name of a function the node offers the LLM (e.g. go_to_billing); calling it moves "
        "the conversation.",
    )
    description: str = Field(
        default="", max_length=1024, description="What the function is for, for the LLM."
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> FlowTransition:
        if (self.on_tool is None) == (self.function is None):
            raise ValueError("a flow transition needs exactly one of onTool or function")
        if self.when is not None and self.on_tool is None:
            raise ValueError("flow transition when needs onTool")
        return self


class FlowEntry(Model):
    """What happens when the conversation enters a node."""

    say: str = Field(default="", max_length=1000, description="A fixed line spoken on entry.")
    respond: bool = Field(
        default=True,
        description="The node answers at once, in the same turn, with its own prompt, tools and LLM; "
        "false: it answers the caller's next turn.",
    )


class FlowExit(Model):
    """What happens when the conversation leaves a node."""

    say: str = Field(default="", max_length=1000, description="A fixed line spoken on exit.")


class FlowNode(Model):
    """One step of the conversation (a specialist agent): its prompt, tools, LLM and ways out."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.transitions) || self.transitions.all(t, !has(t.onTool) "
                    "|| (has(self.tools) && t.onTool in self.tools))",
                    "message": "flow transition onTool must name one of the node's tools",
                    "fieldPath": ".transitions",
                },
                {
                    "rule": "!has(self.transitions) || !has(self.tools) || self.transitions.all(t, "
                    "!has(t.function) || !(t.function in self.tools))",
                    "message": "flow transition function must not reuse a tool name of the node",
                    "fieldPath": ".transitions",
                },
            ]
        }
    )
    name: FlowName = Field(description="Name of the node, unique in the flow.")
    role_prompt: str | None = Field(
        default=None, max_length=65536, description="System prompt of the node; default: spec.prompt."
    )
    task_prompt: str = Field(
        default="", max_length=16384, description="What the node must get done, added after the role prompt."
    )
    tools: list[FlowName] = Field(
        default_factory=list,
        max_length=16,
        description="Names of spec.tools this node may use (none when empty).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    llm: LLMStage | None = Field(
        default=None, description="The node's own language model; default: pipeline.llm."
    )
    context: ContextPolicy = Field(
        default="full",
        description="History the node receives on entry: full (all of it), summary (a summary of what "
        "came before, written by the node's LLM, then what follows) or none (from the caller's current "
        "turn on).",
    )
    on_entry: FlowEntry = Field(default_factory=FlowEntry, description="Actions on entering the node.")
    on_exit: FlowExit = Field(default_factory=FlowExit, description="Actions on leaving the node.")
    transitions: list[FlowTransition] = Field(
        default_factory=list, max_length=16, description="Ways out of the node, tried in order."
    )


class FlowSpec(Model):
    """A conversation graph: nodes with their own prompts, tools and LLMs, and the transitions between
    them. The current node lives in the call's snapshot and follows the call to any pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.nodes.exists(n, n.name == self.initialNode)",
                    "message": "flow.initialNode must name a node of flow.nodes",
                    "fieldPath": ".initialNode",
                },
                {
                    "rule": "self.nodes.all(n, !has(n.transitions) || "
                    "n.transitions.all(t, self.nodes.exists(m, m.name == t.to)))",
                    "message": "flow transition to must name a node of flow.nodes",
                    "fieldPath": ".nodes",
                },
            ]
        }
    )
    initial_node: FlowName = Field(description="The node every new call starts in.")
    nodes: list[FlowNode] = Field(
        min_length=1,
        max_length=32,
        description="The nodes of the flow.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    def node(self, name: str) -> FlowNode | None:
        return next((n for n in self.nodes if n.name == name), None)

    def problems(self, tool_names: set[str]) -> list[str]:
        """What makes the flow unusable with these tools (the same checks the API server's CEL does)."""
        names = [n.name for n in self.nodes]
        out = [f"flow.nodes: node {n!r} appears twice" for n in sorted(set(names)) if names.count(n) > 1]
        if self.initial_node not in names:
            out.append(f"flow.initialNode: {self.initial_node!r} is not a node")
        for node in self.nodes:
            out += [
                f"flow.nodes[{node.name}].tools: {t!r} is not in spec.tools"
                for t in node.tools
                if t not in tool_names
            ]
            for t in node.transitions:
                if t.to not in names:
                    out.append(f"flow.nodes[{node.name}].transitions: {t.to!r} is not a node")
                if t.on_tool is not None and t.on_tool not in node.tools:
                    out.append(f"flow.nodes[{node.name}].transitions: onTool {t.on_tool!r}: not a node tool")
                if t.function is not None and t.function in node.tools:
                    out.append(f"flow.nodes[{node.name}].transitions: function {t.function!r} is a tool name")
        return out


FLOW_TOOLS_RULE: JsonDict = {
    "rule": "!has(self.flow) || self.flow.nodes.all(n, !has(n.tools) || "
    "n.tools.all(t, has(self.tools) && self.tools.exists(s, s.name == t)))",
    "message": "flow.nodes[].tools must name tools of spec.tools",
    "fieldPath": ".flow",
}


def check_flow(flow: FlowSpec | None, tools: list[ToolSpec]) -> None:
    """Raise ValueError naming the field when ``flow`` does not fit ``tools``."""
    if flow is not None and (problems := flow.problems({t.name for t in tools})):
        raise ValueError("; ".join(problems))


# ----- call transfer to another VoiceAgent (docs/transfer.md) ---------------------------------------

AgentName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class TransferSpec(Model):
    """Live calls may be handed to other VoiceAgents of the namespace that share this agent's Redis."""

    targets: list[AgentName] = Field(
        min_length=1,
        max_length=32,
        description="VoiceAgents (same namespace, same Redis) calls may be transferred to.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    context_policy: ContextPolicy = Field(
        default="summary",
        description="What the target agent gets of the conversation: full (the history), summary (an LLM "
        "summary of it) or none.",
    )
    announce: str = Field(
        default="",
        max_length=500,
        description="Spoken to the caller before a transfer the LLM decided; the call moves once it played.",
    )
    summary_max_words: int = Field(
        default=120, ge=10, le=1000, description="Length bound of the summary (contextPolicy: summary)."
    )
    quiet_wait_seconds: float = Field(
        default=10.0, ge=0.5, le=120, description="Longest wait for a quiet moment to move the call at."
    )
    tool: bool = Field(
        default=True,
        description="Offer the LLM the built-in transfer_call tool (the session API can transfer anyway).",
    )


RedactionKind = Literal["card", "phone", "email"]


class AuditSpec(Model):
    """The call's verifiable audit trail: a hash-chained, signed log per call (docs/audit.md)."""

    enabled: bool = Field(
        default=False,
        description="Write an append-only, hash-chained log per call (each turn: text sent and played, "
        "re-transcription, tool calls, recording offsets) with an Ed25519-signed head.",
    )
    signing_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Ed25519 signing key (PEM PKCS#8, or the 32-byte seed). Unset: "
        "the operator generates a seed in the Secret <name>-audit-key.",
    )
    redact: list[RedactionKind] = Field(
        default=["card", "phone", "email"],
        max_length=3,
        description="PII replaced in stored text (card numbers are Luhn-checked, the last four kept).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    keep_raw_text: bool = Field(
        default=False,
        description="Also keep each turn's unredacted text, encrypted (AES-GCM) with a key derived from the "
        "signing key: readable only with that key (voicefleet audit export --raw).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="A call's logs are deleted once none of them was written for this many days. Unset: "
        "kept (audit trails often outlive recordings: set it apart from recording.retentionDays).",
    )


class RecordingS3Spec(Model):
    """An S3-compatible bucket for recordings: segments go up as the call goes (docs/recordings.md)."""

    endpoint: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https?://[^/]+/?$",
        description="Endpoint URL of the S3-compatible server (scheme, host and port).",
    )
    bucket: str = Field(
        min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$", description="Bucket name."
    )
    prefix: str = Field(
        default="recordings/", max_length=512, description="Key prefix of every recording object."
    )
    region: str = Field(default="", max_length=64, description="Region of the bucket; empty: the server's.")
    access_key_secret_ref: SecretKeyRef = Field(description="Secret key holding the access key id.")
    secret_key_secret_ref: SecretKeyRef = Field(description="Secret key holding the secret access key.")
    lifecycle_rule: bool = Field(
        default=True,
        description="Also set a bucket lifecycle rule expiring the prefix after retentionDays (where the "
        "server supports it); the pods' retention sweep applies either way.",
    )


class RecordingSpec(Model):
    """Dual-channel call recordings: caller left, the agent as played right (docs/recordings.md)."""

    enabled: bool = Field(default=False, description="Record every call of this agent.")
    storage: Literal["volume", "s3"] = Field(
        default="volume",
        description="volume: WAV files in a directory (an emptyDir, or the PVC named by volumeClaim); "
        "s3: uploaded to the bucket of s3 as the call goes.",
    )
    sample_rate: Literal[8000, 16000] = Field(
        default=16000, description="Sample rate of the recording (8000 is enough for phone calls)."
    )
    flush_seconds: float = Field(
        default=1.0,
        ge=0.2,
        le=30,
        description="The file is complete up to its last flush: a pod killed mid-call loses at most this.",
    )
    retention_days: int = Field(
        default=30, ge=1, le=3650, description="Recordings older than this are deleted."
    )
    volume_claim: str = Field(
        default="",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description="PersistentVolumeClaim (same namespace) mounted for storage: volume; empty: an "
        "emptyDir (recordings last as long as the pod).",
    )
    volume_size_limit: str = Field(
        default="1Gi",
        max_length=32,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="sizeLimit of the emptyDir (no volumeClaim), a Kubernetes quantity.",
    )
    s3: RecordingS3Spec | None = Field(default=None, description="The bucket, for storage: s3.")

    @model_validator(mode="after")
    def _s3_has_bucket(self) -> RecordingSpec:
        if self.enabled and self.storage == "s3" and self.s3 is None:
            raise ValueError("recording.storage s3 needs recording.s3 (endpoint, bucket, credentials)")
        return self


KB_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class KnowledgeRetrieval(Model):
    """How a call retrieves from its knowledge bases: shared by the VoiceAgent's selection and the pod's
    resolved config."""

    partition_from_metadata: str = Field(
        default="",
        max_length=63,
        description="Call metadata key whose value is the partition searched (tenant, region) besides the "
        "shared one; a call without it searches the shared partition only; empty: every partition.",
    )
    base_label_from_metadata: str = Field(
        default="",
        max_length=316,
        pattern=r"^(" + LABEL_KEY_PATTERN[1:-1] + r")?$",
        description="A label key: of the selected bases, a call searches those whose label <key> equals "
        "the call's metadata value under the same key, and those without the label (shared bases); empty: "
        "every selected base.",
    )
    mode: Literal["tool", "context", "both"] = Field(
        default="tool",
        description="tool: the LLM may call search_knowledge; context: passages are retrieved before each "
        "LLM turn and put in its context; both.",
    )
    top_k: int = Field(default=5, ge=1, le=20, description="Passages retrieved per search.")
    budget_ms: int = Field(
        default=150,
        ge=10,
        le=5000,
        description="Latency budget of a retrieval: a slower base gives no passages rather than a late turn.",
    )
    min_score: float = Field(
        default=0.0, ge=0, le=1, description="Passages scoring below this are dropped (0: keep all)."
    )


class LabelSelectorRequirement(Model):
    key: str = Field(max_length=316, pattern=LABEL_KEY_PATTERN, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="How values apply.")
    values: list[str] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(Model):
    """A Kubernetes label selector (every term must hold)."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must be equal.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Set-based requirements."
    )


class KnowledgeSelectionSpec(KnowledgeRetrieval):
    """Which KnowledgeBases of the namespace the agent's calls may search."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.bases) && size(self.bases) > 0) || has(self.selector)",
                    "message": "knowledge needs bases or a selector",
                }
            ]
        }
    )
    bases: list[Annotated[str, Field(max_length=63, pattern=KB_NAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=32,
        description="KnowledgeBases by name (same namespace).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    selector: LabelSelector | None = Field(
        default=None, description="KnowledgeBases by label, beside those named in bases."
    )

    @model_validator(mode="after")
    def _selects_something(self) -> KnowledgeSelectionSpec:
        if not self.bases and self.selector is None:
            raise ValueError("knowledge needs bases or a selector")
        return self


class KnowledgeBaseRef(Model):
    """A KnowledgeBase the operator resolved for the agent: where its knowledge server answers."""

    name: str
    url: str = Field(description="http://kb-<name>.<namespace>.svc:8080")
    labels: dict[str, str] = Field(default_factory=dict, description="The base's labels (per-call routing).")


class KnowledgeSpec(KnowledgeRetrieval):
    """The agent pod's knowledge config: the bases the operator resolved, and how calls search them."""

    bases: list[KnowledgeBaseRef] = Field(default_factory=list)


class AgentConfig(Model):
    """What one agent pod runs: rendered by the operator into the pod's ConfigMap."""

    agent: str = Field(default="local", description="VoiceAgent name.")
    namespace: str = Field(default="default", description="VoiceAgent namespace.")
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    prompt_text: str = Field(default=DEFAULT_PROMPT)
    prompt_version: str = Field(default="", description="Label from the CR; empty when none was given.")
    tools: list[ToolSpec] = Field(default_factory=list)
    transport: TransportSpec = Field(default_factory=TransportSpec)
    session: SessionSpec = Field(default_factory=SessionSpec)
    sessions_per_pod: int = Field(default=20, ge=1, description="Capacity announced to placement.")
    auth: AuthSpec = Field(default_factory=AuthSpec)
    memory: MemorySpec = Field(default_factory=MemorySpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    flow: FlowSpec | None = Field(default=None, description="Conversation graph; none: one agent, as before.")
    mcp_servers: list[McpServerSpec] = Field(default_factory=list, description="MCP tool sources.")
    transfer: TransferSpec | None = Field(default=None, description="Call transfer to other agents.")
    audit: AuditSpec = Field(default_factory=AuditSpec, description="The call's verifiable audit trail.")
    telephony: TelephonySpec = Field(default_factory=TelephonySpec, description="Phone calls via carriers.")
    recording: RecordingSpec = Field(default_factory=RecordingSpec, description="Call recordings.")
    knowledge: KnowledgeSpec | None = Field(default=None, description="Knowledge bases the calls search.")

    @model_validator(mode="after")
    def _flow_fits_tools(self) -> AgentConfig:
        check_flow(self.flow, self.tools)
        return self

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.prompt_text)

    @property
    def prompt_id(self) -> str:
        """The version recorded with every session: label plus content hash."""
        return f"{self.prompt_version}@{self.prompt_hash}" if self.prompt_version else self.prompt_hash

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.dump(), sort_keys=True).encode()).hexdigest()[:16]


def prompt_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]
