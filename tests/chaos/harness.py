"""A fleet of real `voicefleet pod` processes on 127.0.0.x, one redis-server (or a Sentinel group), and
many gRPC callers.

Pods run the zero-latency synthetic pipeline (energy VAD, synthetic STT/TTS, scripted LLM that
echoes) with WebRTC off. ``ChaosFleet.endpoints`` plays the Kubernetes Service: the gRPC
addresses of ready pods; a pod leaves it the moment it is told to drain or dies.

A caller creates a session through SessionService on any endpoint, talks text turns on the
owning pod, and checks every answer ("You said: <its own text>."). When its stream breaks it asks
SessionService to resume and checks the new pod restored exactly the turns it completed. When a
draining pod offers to move the call, it follows at once and checks the same.
Anything else -- a wrong answer, a lost turn, a session that cannot be resumed, an unexpected
end -- counts as a dropped session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import grpc

from agent_pod.config import AgentConfig
from agent_pod.sessions.fleet_state import FleetState, read_fleet
from agent_pod.sessions.redis_client import AnyRedis, RedisConnection, connect
from tests.support.net import free_port
from tests.support.pod import synthetic_config
from tests.support.redis import RedisServer
from tests.support.redis_ha import MASTER_NAME, SentinelGroup
from tests.support.wait import async_wait_for
from voicefleet.v1 import agent_pb2, agent_pb2_grpc, session_pb2, session_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
RESUME_KEY = b"chaos-resume-key-0123456789abcdef"
READ_TIMEOUT = 30.0  # an answer slower than this is a failure, not load
# Worth asking again (possibly another pod): a pod that is full, draining or gone; or one whose
# server stopped under the request (grpc cancels in-flight calls when a drained pod exits).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def redis_env(redis: RedisServer | SentinelGroup) -> dict[str, str]:
    """How a pod process finds the fleet's Redis."""
    if isinstance(redis, SentinelGroup):
        return {
            "VOICEFLEET_REDIS_SENTINELS": ",".join(redis.addresses),
            "VOICEFLEET_REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
    return {"VOICEFLEET_REDIS_URL": redis.url}


def redis_client(redis: RedisServer | SentinelGroup) -> AnyRedis:
    if isinstance(redis, SentinelGroup):
        return connect(RedisConnection(sentinels=redis.addresses, sentinel_master=MASTER_NAME))
    return connect(RedisConnection(url=redis.url))


def chaos_config(sessions_per_pod: int = 100, drain_seconds: int = 120) -> AgentConfig:
    return synthetic_config(
        "unused",
        agent="chaos-" + uuid.uuid4().hex[:6],
        namespace="chaos",
        transport={"webrtc": {"enabled": False}},
        pipeline={"tts": {"options": {"ms_per_char": "2"}}},
        session={"drainTimeoutSeconds": drain_seconds, "idleTimeoutSeconds": 120},
        sessionsPerPod=sessions_per_pod,
    )


class ChaosPod:
    """`python -m agent_pod.cli pod` bound on its own loopback address."""

    def __init__(self, fleet: ChaosFleet, name: str, host: str, revision: str) -> None:
        self.fleet = fleet
        self.name = name
        self.host = host
        self.revision = revision
        self.grpc_port = free_port(host)
        self.http_port = free_port(host)
        self.metrics_port = free_port(host)
        self.log_path = fleet.workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    async def start(self, within: float = 90.0) -> None:
        env = {
            **os.environ,
            "VOICEFLEET_POD_NAME": self.name,
            "VOICEFLEET_REVISION": self.revision,
            **redis_env(self.fleet.redis),
            "VOICEFLEET_RESUME_KEY_FILE": str(self.fleet.key_file),
            "VOICEFLEET_ADVERTISE_HOST": self.host,
            "VOICEFLEET_LOG_FORMAT": "json",
        }
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent_pod.cli", "pod",
                "--config", str(self.fleet.config_path), "--host", self.host,
                "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port),
                cwd=REPO, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        await async_wait_for(self.ready, timeout=within, what=f"{self.name} ready")

    async def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"http://{self.host}:{self.http_port}/readyz", timeout=aiohttp.ClientTimeout(2)
                ) as r,
            ):
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


R = TypeVar("R", RedisServer, SentinelGroup)


class ChaosFleet(Generic[R]):
    def __init__(self, workdir: Path, redis: R, config: AgentConfig) -> None:
        self.workdir = workdir
        self.redis: R = redis
        self.config = config
        self.config_path = workdir / "agent.json"
        self.config_path.write_text(config.model_dump_json(by_alias=True))
        self.key_file = workdir / "resume.key"
        self.key_file.write_bytes(RESUME_KEY)
        self.pods: dict[str, ChaosPod] = {}
        self.endpoints: list[str] = []  # the Service: gRPC addresses of ready pods
        self._hosts = 0

    async def add(self, revision: str = "r1") -> ChaosPod:
        self._hosts += 1
        pod = ChaosPod(self, f"pod-{self._hosts}", f"127.0.0.{self._hosts + 1}", revision)
        self.pods[pod.name] = pod
        await pod.start()
        self.endpoints.append(pod.grpc_address)
        return pod

    def _leave_service(self, pod: ChaosPod) -> None:
        if pod.grpc_address in self.endpoints:
            self.endpoints.remove(pod.grpc_address)

    def sigterm(self, pod: ChaosPod) -> None:
        """What Kubernetes does on a rollout or scale-down: endpoints first, then SIGTERM."""
        self._leave_service(pod)
        pod.signal(signal.SIGTERM)

    async def sigkill(self, pod: ChaosPod) -> None:
        self._leave_service(pod)
        pod.signal(signal.SIGKILL)
        await pod.wait_exit(10)

    async def state(self) -> FleetState:
        redis = redis_client(self.redis)
        try:
            return await read_fleet(redis, self.config.namespace, self.config.agent)
        finally:
            await redis.aclose()

    async def close(self) -> None:
        for pod in self.pods.values():
            if pod.proc is not None and pod.proc.returncode is None:
                pod.proc.kill()
                await pod.proc.wait()


class Dropped(Exception):
    """The caller lost its session (or its history)."""


class StreamBroken(Exception):
    """The stream ended under the caller: time to resume."""


@dataclass
class Stats:
    sessions_started: int = 0
    sessions_completed: int = 0
    turns: int = 0
    live: int = 0
    resumes: int = 0
    resume_seconds: list[float] = field(default_factory=list)
    retries: int = 0
    dropped: list[str] = field(default_factory=list)
    pods_used: set[str] = field(default_factory=set)
    current: dict[str, str] = field(default_factory=dict)  # live session -> the pod serving it
    turns_in_window: dict[str, int] = field(default_factory=dict)  # caller -> turns since mark()
    answer_seconds: list[float] = field(default_factory=list)  # text sent -> final answer, every turn
    migrations: int = 0  # calls moved by a draining pod, followed by the caller
    migrations_failed: int = 0  # offers the caller could not follow (it stayed)
    switch_seconds: list[float] = field(default_factory=list)  # offer received -> started on the new pod
    gap_seconds: list[float] = field(default_factory=list)  # MigrationCompleted.gap_ms: the call was deaf

    def mark(self) -> None:
        self.turns_in_window = dict.fromkeys(self.turns_in_window, 0)


class Channels:
    """One gRPC channel per pod address, shared by the callers (as a client library would)."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


def _retry_after(exc: grpc.aio.AioRpcError) -> float:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            return float(value)
    return 0.2


class Endpoints(Protocol):
    """Where a caller asks for a session: the Service's addresses (a ChaosFleet plays one)."""

    endpoints: list[str]


class Line:
    """The caller's stream to the pod serving its call. A task of its own reads it, so a MigrationOffer
    is followed the moment it comes, whether the caller is thinking or waiting for an answer; the
    caller keeps writing to whichever stream is current."""

    def __init__(self, caller: Caller, session_id: str) -> None:
        self.caller = caller
        self.session_id = session_id
        self.stats = caller.stats
        self.call: Any = None
        self.turns = 0  # completed turns as the pods reported them: what a new pod must restore
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()  # ServerEvents, or the exception that ended it
        self._reader: asyncio.Task[None] | None = None
        self._retired: list[Any] = []
        # Held while following a move: what the caller writes meanwhile goes to the stream it ends on.
        self._switching = asyncio.Lock()

    async def _start(
        self, address: str, resume_token: str = "", migration_token: str = ""
    ) -> tuple[Any, agent_pb2.SessionStarted]:
        call = agent_pb2_grpc.VoiceAgentStub(self.caller.channels.get(address)).Converse()
        start = agent_pb2.StartSession(
            session_id=self.session_id,
            resume_token=resume_token,
            migration_token=migration_token,
            accepts_migration=True,
            input_format=agent_pb2.AudioFormat(sample_rate_hz=16000, channels=1),
        )
        try:
            await call.write(agent_pb2.ClientEvent(start=start))
            message = await asyncio.wait_for(call.read(), READ_TIMEOUT)
        except BaseException:
            call.cancel()
            raise
        if message is grpc.aio.EOF or message.WhichOneof("event") != "started":
            call.cancel()
            raise StreamBroken(f"no SessionStarted: {message}")
        return call, message.started

    def _serving(self, started: agent_pb2.SessionStarted) -> None:
        self.stats.pods_used.add(started.pod)
        self.stats.current[self.session_id] = started.pod

    async def open(self, address: str, resume_token: str) -> agent_pb2.SessionStarted:
        self.call, started = await self._start(address, resume_token=resume_token)
        self.turns = started.restored_turns
        self._serving(started)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return started

    async def _read(self) -> None:
        try:
            while True:
                message = await self.call.read()
                if message is grpc.aio.EOF:
                    raise StreamBroken("stream closed")
                kind = message.WhichOneof("event")
                if kind == "migrate":
                    await self._follow(message.migrate)
                elif kind == "migrated":
                    self.stats.gap_seconds.append(message.migrated.gap_ms / 1000)
                else:
                    if kind == "agent_text" and message.agent_text.final:
                        self.turns += 1
                    self.inbox.put_nowait(message)
        except grpc.aio.AioRpcError as exc:
            self.inbox.put_nowait(StreamBroken(f"{exc.code().name}: {exc.details()}"))
        except Exception as exc:
            self.inbox.put_nowait(exc)

    async def _follow(self, offer: agent_pb2.MigrationOffer) -> None:
        """Open the call on the offered pod; once it started there, tell the old pod and switch."""
        async with self._switching:
            await self._switch(offer)

    async def _switch(self, offer: agent_pb2.MigrationOffer) -> None:
        offered = time.monotonic()
        try:
            call, started = await self._start(offer.grpc_address, migration_token=offer.migration_token)
        except (StreamBroken, grpc.aio.AioRpcError, TimeoutError) as exc:
            self.stats.migrations_failed += 1
            result = agent_pb2.MigrationResult(followed=False, error=str(exc)[:200])
            await self.call.write(agent_pb2.ClientEvent(migration=result))
            return
        if not started.migrated or started.restored_turns != self.turns:
            call.cancel()
            restored = started.restored_turns
            raise Dropped(f"moved without its history: restored {restored} of {self.turns} turns")
        old, self.call = self.call, call
        self._retired.append(old)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await old.write(agent_pb2.ClientEvent(migration=agent_pb2.MigrationResult(followed=True)))
            await old.done_writing()
        self.stats.migrations += 1
        self.stats.switch_seconds.append(time.monotonic() - offered)
        self._serving(started)

    async def write(self, message: agent_pb2.ClientEvent) -> None:
        async with self._switching:
            await self.call.write(message)

    async def read_until(self, want: str) -> Any:
        while True:
            try:
                item = await asyncio.wait_for(self.inbox.get(), READ_TIMEOUT)
            except TimeoutError as exc:
                raise Dropped(f"no {want} within {READ_TIMEOUT:g} s") from exc
            if isinstance(item, BaseException):
                raise item
            kind = item.WhichOneof("event")
            if kind == want and (kind != "agent_text" or item.agent_text.final):
                return getattr(item, kind)
            if kind == "ended":
                raise StreamBroken(f"session ended by the pod: {item.ended.reason}")
            if kind == "error" and item.error.fatal:
                raise Dropped(f"fatal error: {item.error.message}")

    async def finish(self) -> None:
        """After EndSession: the pod confirms with SessionEnded, then the RPC closes with its status."""
        with contextlib.suppress(StreamBroken):
            await self.read_until("ended")
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self.call.done_writing()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), READ_TIMEOUT)

    def cancel(self) -> None:
        if self.call is not None:
            self.call.cancel()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for call in self._retired:
            call.cancel()


class Caller:
    def __init__(
        self, name: str, fleet: Endpoints, channels: Channels, stats: Stats, rng: random.Random
    ) -> None:
        self.name = name
        self.fleet = fleet
        self.channels = channels
        self.stats = stats
        self.rng = rng
        stats.turns_in_window[name] = 0

    async def _allocate(
        self, resume: tuple[str, str] | None, within: float = 60.0
    ) -> session_pb2.SessionGrant:
        """CreateSession / ResumeSession on any ready pod; retried while the fleet is full or moving."""
        deadline = time.monotonic() + within
        last = ""
        while time.monotonic() < deadline:
            if not self.fleet.endpoints:
                await asyncio.sleep(0.2)
                continue
            stub = session_pb2_grpc.SessionServiceStub(
                self.channels.get(self.rng.choice(self.fleet.endpoints))
            )
            try:
                if resume is None:
                    return await stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10)
                request = session_pb2.ResumeSessionRequest(session_id=resume[0], resume_token=resume[1])
                return await stub.ResumeSession(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
                if exc.code() not in RETRYABLE:
                    raise Dropped(f"{'resume' if resume else 'create'} refused: {last}") from exc
                self.stats.retries += 1
                await asyncio.sleep(min(_retry_after(exc), 1.0) * self.rng.uniform(0.5, 1.0))
        raise Dropped(f"no pod would take the session within {within:g} s: {last}")

    async def session(
        self, turns: int, think: tuple[float, float], stop: asyncio.Event | None = None
    ) -> None:
        """One call of ``turns`` text turns, resumed across pod failures and moved when a pod says so."""
        grant = await self._allocate(None)
        sid, token, address = grant.session_id, grant.resume_token, grant.grpc_address
        self.stats.sessions_started += 1
        done = 0
        broken_at: float | None = None
        live = False
        try:
            while done < turns:
                line = Line(self, sid)
                try:
                    started = await line.open(address, resume_token=token)
                    if broken_at is not None:
                        self.stats.resume_seconds.append(time.monotonic() - broken_at)
                        broken_at = None
                    if done and (not started.resumed or started.restored_turns != done):
                        raise Dropped(
                            f"history lost: resumed={started.resumed}, "
                            f"restored {started.restored_turns} of {done} turns"
                        )
                    if not live:
                        self.stats.live += 1
                        live = True
                    while done < turns:
                        text = f"{self.name} {sid[:8]} turn {done}"
                        asked = time.monotonic()
                        await line.write(agent_pb2.ClientEvent(text=agent_pb2.TextInput(text=text)))
                        answer = await line.read_until("agent_text")
                        self.stats.answer_seconds.append(time.monotonic() - asked)
                        if answer.text != f"You said: {text}.":
                            raise Dropped(f"wrong answer {answer.text!r} to {text!r}")
                        done += 1
                        self.stats.turns += 1
                        self.stats.turns_in_window[self.name] += 1
                        if stop is not None and stop.is_set():
                            turns = done  # wrap up: end the call after this turn
                        elif done < turns:
                            await asyncio.sleep(self.rng.uniform(*think))
                    await line.write(agent_pb2.ClientEvent(end=agent_pb2.EndSession(reason="bye")))
                    await line.finish()
                except (StreamBroken, grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    line.cancel()
                    if broken_at is None:
                        broken_at = time.monotonic()
                    self.stats.resumes += 1
                    grant = await self._allocate((sid, token))
                    address = grant.grpc_address
                finally:
                    line.close()
            self.stats.sessions_completed += 1
        except Dropped as exc:
            self.stats.dropped.append(f"{self.name} {sid}: {exc}")
        finally:
            self.stats.current.pop(sid, None)
            if live:
                self.stats.live -= 1

    async def loop(self, stop: asyncio.Event, turns: tuple[int, int], think: tuple[float, float]) -> None:
        """Call after call until ``stop``; the call in progress is finished, not cut."""
        while not stop.is_set():
            await self.session(self.rng.randint(*turns), think, stop)


async def run_callers(callers: list[Caller], coroutines: list[Any]) -> None:
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for caller, result in zip(callers, results, strict=True):
        if isinstance(result, BaseException):
            caller.stats.dropped.append(f"{caller.name}: {type(result).__name__}: {result}")
