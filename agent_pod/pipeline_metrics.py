"""Prometheus metrics of the voice pipeline (prometheus-client default registry).

Latency histograms share buckets suited to voice: 5 ms .. 5 s. The transports
register their own metrics next to these.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from .pipeline.events import TERMINAL_TOOL_STATES

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
)
# Frame lateness is sub-frame most of the time: finer buckets at the low end.
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5)

SESSIONS_LIVE = Gauge("voicefleet_sessions_live", "Sessions currently running on this pod.")
# Outcomes of voicefleet_sessions_total; any other close reason counts as "other".
SESSION_OUTCOMES = (
    "client_ended",
    "idle_timeout",
    "max_duration",
    "error",
    "drain_deadline",
    "shutdown",
    "disconnected",
    "invalid_message",
    "slow_reader",
    "input_flood",
    "never_connected",
    "migrated",
    "other",
)
SESSIONS_TOTAL = Counter("voicefleet_sessions_total", "Sessions ended, by outcome.", ["outcome"])
# Exported at 0 from start-up, like every outcome the alerts count: a series born at 1 shows no
# increase(), so the first call cut at a drain deadline would never alert.
for _outcome in SESSION_OUTCOMES:
    SESSIONS_TOTAL.labels(_outcome)
STT_FINAL_SECONDS = Histogram(
    "voicefleet_stt_final_seconds",
    "End of the caller's speech (VAD) -> final transcript (the end-of-turn decision).",
    buckets=LATENCY_BUCKETS,
)
LLM_FIRST_TOKEN_SECONDS = Histogram(
    "voicefleet_llm_first_token_seconds", "LLM request -> first streamed output.", buckets=LATENCY_BUCKETS
)
TTS_FIRST_AUDIO_SECONDS = Histogram(
    "voicefleet_tts_first_audio_seconds", "TTS request -> first audio.", buckets=LATENCY_BUCKETS
)
RESPONSE_LATENCY_SECONDS = Histogram(
    "voicefleet_response_latency_seconds",
    "End-of-turn decision (final transcript in hand, or text received) -> first agent audio frame out.",
    buckets=LATENCY_BUCKETS,
)
INTERRUPTIONS_TOTAL = Counter("voicefleet_interruptions_total", "Agent turns cut short by caller speech.")
TURNS_TOTAL = Counter(
    "voicefleet_turns_total",
    "Agent answers to a caller turn, by result: answered, failed (the LLM or TTS chain ran out).",
    ["result"],
)
for _result in ("answered", "failed"):
    TURNS_TOTAL.labels(_result)
PROVIDER_ERRORS_TOTAL = Counter(
    "voicefleet_provider_errors_total", "Provider calls that failed or timed out.", ["stage", "provider"]
)
PROVIDER_FALLBACKS_TOTAL = Counter(
    "voicefleet_provider_fallbacks_total",
    "Hand-overs from a failing provider to the next of its stage.",
    ["stage", "from_provider", "to_provider"],
)
OUTPUT_FRAME_LATENESS_SECONDS = Histogram(
    "voicefleet_output_frame_lateness_seconds",
    "How late the playout clock woke up for a 20 ms output tick.",
    buckets=LATENESS_BUCKETS,
)
GC_PAUSE_SECONDS = Histogram(
    "voicefleet_gc_pause_seconds",
    "Garbage-collector pauses of the pod process, by generation (the event loop stands still meanwhile).",
    ["generation"],
    buckets=LATENESS_BUCKETS,
)
TOOL_CALLS_TOTAL = Counter("voicefleet_tool_calls_total", "Tool calls by terminal state.", ["tool", "state"])
TOOL_FAILURES_TOTAL = Counter(
    "voicefleet_tool_failures_total",
    "Tool calls that ended without a usable result: failed, timed out, or arguments still invalid with no "
    "repair left (cancelled calls are not failures).",
)
TRANSCRIPT_DIVERGENCE_FLAGGED_TOTAL = Counter(
    "voicefleet_transcript_divergence_flagged_total",
    "Agent turns whose played audio, re-transcribed, diverges from the recorded text above the threshold.",
)
UTTERANCES_CUT_TOTAL = Counter(
    "voicefleet_utterances_cut_total",
    "Caller utterances cut at maxUtteranceSeconds: the speech so far became a turn, the rest the next.",
)
HISTORY_TURNS_DROPPED_TOTAL = Counter(
    "voicefleet_history_turns_dropped_total",
    "Oldest caller turns dropped from conversations to keep them within maxHistoryTurns and maxHistoryChars.",
)
REVISION_INFO = Gauge(
    "voicefleet_revision_info",
    "1 for the revision (config hash) and prompt version this pod runs.",
    ["revision", "prompt_version"],
)
STT_BACKLOG_DROPPED_TOTAL = Counter(
    "voicefleet_stt_backlog_dropped_total",
    "Caller audio windows dropped because speech recognition fell maxUtteranceSeconds behind the caller.",
)

# Caller sound while the agent speaks (pipeline/overlap.py).
OVERLAPS_TOTAL = Counter(
    "voicefleet_overlaps_total",
    "Caller sounds transcribed while the agent spoke, by what they were: cancel, backchannel, speech, noise.",
    ["kind"],
)
for _kind in ("cancel", "backchannel", "speech", "noise"):
    OVERLAPS_TOTAL.labels(_kind)
AGENT_PAUSES_TOTAL = Counter(
    "voicefleet_agent_pauses_total",
    "Agent speech paused by a possible barge-in, by outcome: interrupted, or resumed (a false interruption).",
    ["outcome"],
)
for _outcome in ("interrupted", "resumed"):
    AGENT_PAUSES_TOTAL.labels(_outcome)
# The speech gate (pipeline/speech_gate.py) and its supervisor (pipeline/supervisor.py).
SPEECH_HELD_SECONDS = Histogram(
    "voicefleet_speech_held_seconds",
    "Hold mode: first text piece of a round that offers tools -> the model's decision (its stream's end).",
    buckets=LATENCY_BUCKETS,
)
FILLERS_TOTAL = Counter("voicefleet_fillers_total", "Filler phrases spoken while slow tools ran.")
SUPERVISOR_CHECK_SECONDS = Histogram(
    "voicefleet_supervisor_check_seconds",
    "One supervisor check of a draft piece (regex rules, then the LLM within its budget).",
    buckets=LATENCY_BUCKETS,
)
SUPERVISOR_VERDICTS = ("allow", "veto", "redirect")
SUPERVISOR_SOURCES = ("rule", "llm", "timeout", "malformed")
SUPERVISOR_VERDICTS_TOTAL = Counter(
    "voicefleet_supervisor_verdicts_total",
    "Supervisor verdicts on draft pieces, by verdict and by what decided it (a deny-list rule, the LLM, or "
    "onTimeout after a late or malformed answer). Pieces checked in parallel after a veto count too.",
    ["verdict", "source"],
)
for _verdict in SUPERVISOR_VERDICTS:
    for _source in SUPERVISOR_SOURCES:
        SUPERVISOR_VERDICTS_TOTAL.labels(_verdict, _source)


def export_tool_calls(tools: Iterable[str]) -> None:
    """Every terminal state of the pod's tools at 0 from start-up: a series born at 1 (or 2) shows no
    rate(), and a tool's first calls would be missing from its failure rate."""
    for tool in tools:
        for state in sorted(TERMINAL_TOOL_STATES):
            TOOL_CALLS_TOTAL.labels(tool=tool, state=state)
