"""The agent pod: providers, playout clock, session directory, gRPC/WebRTC/HTTP servers, health and drain.

Lifecycle: ``start()`` builds everything and turns ready; SIGTERM (or ``drain()``)
turns readiness off at once, tells the directory to leave placement, refuses new
sessions and serves the live ones until they end or the drain deadline, when the
rest are closed with reason ``drain_deadline``; then ``stop()`` and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from voicefleet.v1 import session_pb2

from . import pipeline_metrics
from .config import AgentConfig
from .context.persistence import caller_memory
from .gc_pauses import PauseMeter, freeze_startup_heap
from .knowledge.call import export_retrieval_series
from .pipeline.recorder import PipelineRecorder
from .providers.registry import build_providers
from .records import storage as recordings
from .records.call_audits import CallAudits
from .records.retention import sweep_forever
from .sessions.api import add_session_service, session_routes
from .sessions.directory import PodIdentity, SessionDirectory
from .sessions.factory import build_directory, build_gate
from .sessions.gate import SessionGate
from .sessions.revision_stats import RevisionTally
from .sessions.tuning import DirectoryTuning
from .settings import PodSettings
from .telephony.audiosocket import AudioSocketServer, read_credential
from .telephony.stream import MediaStreams
from .telephony.webhook import Webhooks
from .tools.platform import ToolPlatform, pod_platform
from .transfer.api import TransferService
from .transports.cors import CorsPolicy
from .transports.grpc_server import GrpcServer
from .transports.http import Health, Scrapes, build_app, build_metrics_app, serve
from .transports.http_guard import HttpLimits
from .transports.hub import SessionHub
from .transports.ice import IcePolicy
from .transports.playout_clock import PlayoutClock
from .transports.signaling import Signaling
from .transports.webrtc import WebRTCTransport

log = logging.getLogger(__name__)

# A scraped pod waits this long at most for its last scrape (the chart's default interval is 15 s).
LAST_SCRAPE_WAIT_SECONDS = 15.0
SESSION_SERVICE = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


@dataclass
class Ports:
    """Ports to bind; 0 picks a free one. Defaults come from config.transport."""

    grpc: int
    http: int
    metrics: int
    udp_min: int
    udp_max: int
    audio_socket: int = 0

    @classmethod
    def from_config(cls, config: AgentConfig) -> Ports:
        t = config.transport
        return cls(
            grpc=t.grpc.port,
            http=t.http_port,
            metrics=t.metrics_port,
            udp_min=t.webrtc.udp_port_range.min,
            udp_max=t.webrtc.udp_port_range.max,
            audio_socket=t.audio_socket.port,
        )


class Pod:
    def __init__(
        self,
        settings: PodSettings,
        config: AgentConfig,
        ports: Ports | None = None,
        slow_reader_seconds: float = 5.0,
        tuning: DirectoryTuning | None = None,
        http_limits: HttpLimits | None = None,
    ) -> None:
        self.settings = settings
        self._tuning = tuning
        self.http_limits = http_limits or HttpLimits()
        self.config = config
        self.ports = ports or Ports.from_config(config)
        self.health = Health()
        self.scrapes = Scrapes()
        self.clock = PlayoutClock()
        self._slow_reader_seconds = slow_reader_seconds
        self.directory: SessionDirectory | None = None
        self.gate: SessionGate | None = None
        self.hub: SessionHub | None = None
        self.grpc: GrpcServer | None = None
        self.webrtc: WebRTCTransport | None = None
        self.audio_socket: AudioSocketServer | None = None
        self.recordings: recordings.RecordingStore | None = None
        self._sweeps: list[asyncio.Task[None]] = []  # retention: recordings, audit logs
        self._runners: list[web.AppRunner] = []
        self.grpc_port = 0
        self.http_port = 0
        self.metrics_port = 0
        self._drained = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        # What this pod's calls count for its revision (the canary analysis reads the totals in Redis).
        self.revision_tally = RevisionTally()
        self.tool_platform: ToolPlatform | None = None
        self.media_streams: MediaStreams | None = None  # spec.telephony

    @property
    def host(self) -> str:
        return self.settings.public_host

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else ""

    @property
    def ice_address(self) -> str:
        """The local address media is offered on: the pod IP, a specific bind host, else loopback."""
        bind = self.settings.bind_host
        return self.settings.pod_ip or (bind if bind not in ("", "0.0.0.0", "::") else "127.0.0.1")

    async def start(self) -> None:
        settings, config, transport = self.settings, self.config, self.config.transport
        providers = build_providers(config.pipeline)
        export_retrieval_series(config.knowledge)
        await self.clock.start()
        bind = settings.bind_host
        # The HTTP and gRPC ports are bound before the directory starts, so it announces real addresses.
        identity = PodIdentity(
            name=settings.pod_name, grpc_address="", http_url="", revision=settings.revision
        )
        directory = build_directory(settings, config, identity, self._tuning, self.revision_tally)
        self.directory = directory
        gate = self.gate = build_gate(config, directory, settings.credentials_dir)
        self.tool_platform = pod_platform(directory, config)
        await self._start_recordings()
        audits = CallAudits.build(config, settings.audit_dir, settings.audit_key_file, settings.pod_name)
        if audits is not None and config.audit.retention_days is not None:
            self._sweeps.append(
                asyncio.create_task(sweep_forever(audits.sweep, "audit log"), name="audit-retention")
            )
        self.hub = SessionHub(
            config=config,
            providers=providers,
            directory=self.directory,
            gate=gate,
            clock=self.clock,
            pod_name=settings.pod_name,
            recorder=PipelineRecorder(self.revision_tally),
            tool_platform=self.tool_platform,
            audits=audits,
            recordings=self.recordings,
        )
        if transport.audio_socket.enabled:
            # A reconnecting PBX finds its call by UUID for as long as the directory keeps it resumable.
            keep = (self._tuning or DirectoryTuning()).resume_window_seconds
            credential = read_credential(transport.audio_socket, settings.credentials_dir)
            self.audio_socket = AudioSocketServer(self.hub, transport.audio_socket, keep, credential)
        cors = CorsPolicy(config.auth.cors)
        transfers = TransferService(self.hub, gate)
        memory = caller_memory(config.memory.persistence, directory)
        join = self.audio_socket.join_key if self.audio_socket is not None else None
        routes: list[web.RouteDef] = [
            *session_routes(directory, gate, cors, memory, join),
            *transfers.routes(cors),
            web.post("/drain", self._begin_drain),
        ]
        if config.telephony.enabled:
            self.media_streams = MediaStreams(self.hub, config.telephony)
            routes += [*Webhooks(config.telephony, directory, gate).routes(), *self.media_streams.routes()]
        if transport.webrtc.enabled:
            policy = IcePolicy(
                addresses=[self.ice_address], port_min=self.ports.udp_min, port_max=self.ports.udp_max
            )
            self.webrtc = WebRTCTransport(self.hub, policy, transport.webrtc.opus_complexity)
            routes += Signaling(self.webrtc, cors).routes()
        app = build_app(self.health, routes, self.http_limits)
        runner, self.http_port = await serve(app, bind, self.ports.http, self.http_limits)
        self._runners.append(runner)
        runner, self.metrics_port = await serve(build_metrics_app(self.scrapes), bind, self.ports.metrics)
        self._runners.append(runner)
        if transport.grpc.enabled:
            self.grpc = GrpcServer(
                self.hub,
                pod_name=settings.pod_name,
                extra_services=[
                    (
                        SESSION_SERVICE,
                        lambda server: add_session_service(server, directory, gate, transfers.grpc),
                    )
                ],
                slow_reader_seconds=self._slow_reader_seconds,
            )
            self.grpc_port = await self.grpc.start(bind, self.ports.grpc)
        if self.audio_socket is not None:
            await self.audio_socket.start(bind, self.ports.audio_socket)
        identity.grpc_address, identity.http_url = self.grpc_address, self.http_url
        await self.directory.start()
        await gate.start()
        await self.hub.start()
        await self.tool_platform.mcp.start()  # a server that is down is retried; calls go on without it
        pipeline_metrics.REVISION_INFO.labels(
            settings.revision or "none", config.prompt_version or "none"
        ).set(1)
        pipeline_metrics.export_tool_calls([*(t.name for t in config.tools), *self.tool_platform.mcp.tools])
        self.health.started = True
        self.ready.set()
        log.info(
            "pod ready",
            extra={
                "http_url": self.http_url,
                "grpc_address": self.grpc_address,
                "metrics_port": self.metrics_port,
                "audiosocket_port": self.audio_socket.port if self.audio_socket else 0,
            },
        )

    async def _begin_drain(self, request: web.Request) -> web.Response:
        """The preStop hook (`voicefleet drain`): leave routing before SIGTERM arrives. Only from inside
        the pod, so no caller can drain it."""
        if not ipaddress.ip_address(request.remote or "0.0.0.0").is_loopback:
            return web.json_response({"error": "drain is only accepted from the pod itself"}, status=403)
        if self._drain_task is None and not self.health.draining:
            self._drain_task = asyncio.create_task(self.drain())
        log.info(
            "drain requested by preStop", extra={"live_sessions": self.hub.live_sessions if self.hub else 0}
        )
        return web.json_response({"draining": True})

    async def drain(self) -> None:
        """SIGTERM: not ready at once, no new sessions, live ones served up to the drain deadline."""
        if self.health.draining:
            await self._drained.wait()
            return
        self.health.draining = True
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        assert self.hub is not None
        await self.hub.drain(self.config.session.drain_timeout_seconds)
        self._drained.set()

    async def _last_scrape(self) -> None:
        """A scraped pod waits (briefly) for one scrape after its drain: the calls it moved or cut at the
        drain deadline are counted then, and would be lost with the process. The wait fits in the
        grace period the operator gives beyond the drain deadline."""
        if self.scrapes.count == 0:
            return  # nothing scrapes this pod
        scraped = await self.scrapes.next(LAST_SCRAPE_WAIT_SECONDS)
        log.info(
            "last scrape %s", "done" if scraped else "did not come", extra={"scrapes": self.scrapes.count}
        )

    async def _start_recordings(self) -> None:
        """The pod's recording store (spec.recording) and its retention sweep; a store that cannot start
        leaves calls unrecorded, never the pod down."""
        spec = self.config.recording
        if not spec.enabled:
            return
        store = recordings.build_store(spec, self.config.agent, recordings.recordings_dir())
        try:
            await store.start()
        except Exception:
            log.exception("recordings disabled: the store could not start")
            return
        self.recordings = store
        self._sweeps.append(
            asyncio.create_task(sweep_forever(store.sweep, "recording"), name="recording-retention")
        )

    async def stop(self) -> None:
        if self.webrtc is not None:
            await self.webrtc.aclose()
        if self.audio_socket is not None:
            await self.audio_socket.aclose()
        if self.hub is not None:
            await self.hub.aclose()
        for sweep in self._sweeps:
            sweep.cancel()
        if self.recordings is not None:  # after the sessions: their recordings are finished
            await self.recordings.aclose()
        if self.tool_platform is not None:
            await self.tool_platform.mcp.aclose()
        if self.grpc is not None:
            await self.grpc.stop(grace=1.0)
        for runner in reversed(self._runners):
            await runner.cleanup()
        if self.gate is not None:
            await self.gate.aclose()
        self._runners.clear()
        await self.clock.stop()
        if self.directory is not None:
            await self.directory.aclose()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, drain, stop; the process exit code."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        # The process is this pod's alone from here on: keep its start-up heap out of collections.
        PauseMeter().install()
        frozen = freeze_startup_heap()
        log.info("start-up heap frozen", extra={"objects": frozen})
        try:
            await stop.wait()
            log.info(
                "signal received: draining",
                extra={"live_sessions": self.hub.live_sessions if self.hub else 0},
            )
            await self.drain()
            await self._last_scrape()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
        log.info("pod stopped")
        return 0
