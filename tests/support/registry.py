"""Registry heartbeats for pods that run no process (KWOK): what agent pods write to Redis.

Uses the session layer's own records and keys, so the operator reads exactly
what it would read from real agent pods.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from agent_pod.sessions.keys import AgentKeys
from agent_pod.sessions.records import PodRecord


class Heartbeats:
    """Plays the agent pods' registry heartbeats: pod name -> live sessions."""

    def __init__(self, url: str, namespace: str, agent: str, capacity: int, **options: Any) -> None:
        self.redis = redis.Redis.from_url(url, **options)  # options: e.g. ssl_ca_certs for TLS
        self.keys = AgentKeys(namespace, agent)
        self.capacity = capacity
        self.sessions: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _beat(self) -> None:
        seconds, micros = self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pipe = self.redis.pipeline()
        for pod, live in dict(self.sessions).items():
            rec = PodRecord(name=pod, capacity=self.capacity, live=live, heartbeat_ms=now_ms)
            pipe.sadd(self.keys.pods, pod)
            pipe.hset(self.keys.pod(pod), mapping=dict[Any, Any](rec.to_mapping()))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._beat()
            except redis.ConnectionError:  # an outage the test made: beat again once it is over
                continue

    def set(self, sessions: dict[str, int]) -> None:
        for gone in set(self.sessions) - set(sessions):
            self.redis.srem(self.keys.pods, gone)
            self.redis.delete(self.keys.pod(gone))
        self.sessions = dict(sessions)
        self._beat()

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
