"""What the calls of a pod count, in one place: the pod's Prometheus metrics, and the tally of its
revision that goes to Redis for canary analysis (``sessions.revision_stats``).

Each pipeline event is counted here once, so the dashboard and the canary analysis see the same
events under the same definitions.
"""

from __future__ import annotations

from .. import pipeline_metrics
from ..sessions.revision_stats import RevisionTally


class PipelineRecorder:
    def __init__(self, tally: RevisionTally | None = None) -> None:
        # A pod without a fleet (or a test of one session) keeps its tally to itself.
        self.tally = tally if tally is not None else RevisionTally()

    def session_started(self) -> None:
        self.tally.add("sessions")

    def turn_finished(self, failed: bool) -> None:
        """An agent turn went into the history; ``failed``: a provider chain ran out during it."""
        pipeline_metrics.TURNS_TOTAL.labels("failed" if failed else "answered").inc()
        self.tally.add("turns")
        if failed:
            self.tally.add("turn_errors")

    def response_latency(self, seconds: float) -> None:
        """End-of-turn decision -> first agent audio frame out."""
        pipeline_metrics.RESPONSE_LATENCY_SECONDS.observe(seconds)
        self.tally.observe_latency_ms(seconds * 1000)

    def interruption(self) -> None:
        pipeline_metrics.INTERRUPTIONS_TOTAL.inc()
        self.tally.add("interruptions")

    def tool_call_finished(self, tool: str, state: str, failure: bool) -> None:
        """A tool call reached its terminal ``state``; ``failure``: it gave the turn no usable result."""
        pipeline_metrics.TOOL_CALLS_TOTAL.labels(tool=tool, state=state).inc()
        self.tally.add("tool_calls")
        if failure:
            pipeline_metrics.TOOL_FAILURES_TOTAL.inc()
            self.tally.add("tool_failures")

    def turn_audited(self, flagged: bool) -> None:
        """The played audio of a turn was re-transcribed; ``flagged``: it diverges from the record."""
        self.tally.add("audited_turns")
        if flagged:
            pipeline_metrics.TRANSCRIPT_DIVERGENCE_FLAGGED_TOTAL.inc()
            self.tally.add("divergence_flags")
