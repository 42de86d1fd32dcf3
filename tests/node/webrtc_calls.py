"""WebRTC callers beside the gRPC ones: a session from the agent Service, media over UDP to the pod's IP.

Each caller asks SessionService (through the Service's ClusterIP) for a session, opens a WebRTC
call to the owning pod's signaling URL (the pod advertises its pod IP), says text turns on the
data channel and checks every final answer, then hangs up and calls again until told to stop.
A pod that drains moves the call; the caller follows (a new peer connection to the new pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from agent_pod.client.record import CallSummary
from agent_pod.client.webrtc_client import WebRTCCaller
from tests.chaos.harness import RETRYABLE
from tests.support.wait import async_wait_for
from voicefleet.v1 import session_pb2, session_pb2_grpc
from voicefleet_operator.devnode import NODE_IP

ANSWER_TIMEOUT = 30.0


def answered(turns: int) -> Callable[[CallSummary], bool]:
    def check(summary: CallSummary) -> bool:
        return len(summary.agent_texts) >= turns

    return check


@dataclass
class WebRTCStats:
    started: int = 0
    completed: int = 0
    turns: int = 0
    replaced: int = 0  # offers refused by a pod that began draining, then placed again
    moved: int = 0  # calls a draining pod moved to another pod (the caller followed)
    turns_since_mark: dict[str, int] = field(default_factory=dict)
    pods_used: set[str] = field(default_factory=set)
    dropped: list[str] = field(default_factory=list)


class WebRTCCalls:
    def __init__(self, service: str, count: int, turns: tuple[int, int], think: tuple[float, float]) -> None:
        self.stats = WebRTCStats()
        self.stop = asyncio.Event()
        self.channel = grpc.aio.insecure_channel(service)
        self._tasks = [
            asyncio.ensure_future(self._loop(f"w{i}", random.Random(1000 + i), turns, think))
            for i in range(count)
        ]

    async def _allocate(self, resume: session_pb2.SessionGrant | None = None) -> session_pb2.SessionGrant:
        """CreateSession (or ResumeSession of ``resume``) through the Service, retried while pods move."""
        stub = session_pb2_grpc.SessionServiceStub(self.channel)
        for _ in range(100):  # a pod may be leaving the Service just now
            try:
                if resume is None:
                    return await stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10)
                request = session_pb2.ResumeSessionRequest(
                    session_id=resume.session_id, resume_token=resume.resume_token
                )
                return await stub.ResumeSession(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(0.3)
        raise RuntimeError("no pod would take a WebRTC session")

    async def _connect(
        self, grant: session_pb2.SessionGrant
    ) -> tuple[WebRTCCaller, session_pb2.SessionGrant]:
        """Open the call on the granted pod. A pod that began draining after it was chosen refuses the
        offer (503): ask again, as the refusal says, and go where the session is placed now."""
        for _ in range(20):
            caller = WebRTCCaller(
                grant.webrtc_url,
                session_id=grant.session_id,
                resume_token=grant.resume_token,
                local_address=NODE_IP,  # the host's address on the pods' bridge
            )
            try:
                await caller.open()
                return caller, grant
            except ConnectionError as exc:
                await caller.close()
                if "(503)" not in str(exc):
                    raise
                self.stats.replaced += 1
                grant = await self._allocate(resume=grant)
        raise RuntimeError(f"no pod would open the call of session {grant.session_id}")

    async def _call(self, name: str, rng: random.Random, turns: int, think: tuple[float, float]) -> None:
        caller, grant = await self._connect(await self._allocate())
        self.stats.started += 1
        try:
            self.stats.pods_used.add(grant.pod)
            for turn in range(turns):
                text = f"{name} {grant.session_id[:8]} turn {turn}"
                caller.send_text(text)
                summary = await caller.recorder.wait(answered(turn + 1), ANSWER_TIMEOUT)
                if summary.agent_texts[turn] != f"You said: {text}.":
                    raise AssertionError(f"wrong answer {summary.agent_texts[turn]!r} to {text!r}")
                if summary.ended is not None:
                    raise AssertionError(f"the pod ended the call: {summary.ended}")
                self.stats.turns += 1
                self.stats.turns_since_mark[name] = self.stats.turns_since_mark.get(name, 0) + 1
                if self.stop.is_set():
                    break
                await asyncio.sleep(rng.uniform(*think))
            await caller.end()
            self.stats.completed += 1
        finally:
            self.stats.pods_used.update(pod for pod in caller.pods if pod)
            self.stats.moved += max(0, len(caller.pods) - 1)
            await caller.close()

    async def _loop(
        self, name: str, rng: random.Random, turns: tuple[int, int], think: tuple[float, float]
    ) -> None:
        while not self.stop.is_set():
            try:
                await self._call(name, rng, rng.randint(*turns), think)
            except Exception as exc:
                self.stats.dropped.append(f"{name}: {type(exc).__name__}: {exc}")
                return

    async def talking(self, within: float = 120) -> None:
        """Every WebRTC caller completes two more turns from now on."""
        self.stats.turns_since_mark = dict.fromkeys(self.stats.turns_since_mark, 0)

        async def all_talking() -> bool:
            counts = self.stats.turns_since_mark
            return (len(counts) == len(self._tasks) and min(counts.values()) >= 2) or bool(self.stats.dropped)

        await async_wait_for(all_talking, timeout=within, what="every WebRTC caller talking")
        assert not self.stats.dropped, self.stats.dropped

    async def finish(self, within: float = 120) -> WebRTCStats:
        self.stop.set()
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), within)
        finally:
            await self.channel.close()
        return self.stats

    async def __aenter__(self) -> WebRTCCalls:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:  # a failed step: stop the callers rather than wait for them
            await self.abort()

    async def abort(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channel.close()
