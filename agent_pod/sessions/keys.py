"""Redis key layout of one VoiceAgent, under a versioned prefix.

Every key of an agent carries the hash tag ``{<namespace>/<agent>}`` so a Redis
Cluster keeps the agent on one slot (the Lua scripts touch several of its keys).

    vf:v1:{ns/agent}:pods            SET   names of registered pods
    vf:v1:{ns/agent}:pod:<pod>       HASH  PodRecord (expires when heartbeats stop)
    vf:v1:{ns/agent}:load:<pod>      ZSET  session id -> lease deadline (ms); the pod's load
                                           is the count of unexpired leases
    vf:v1:{ns/agent}:pin:<session>   HASH  PinRecord: which pod owns the session
    vf:v1:{ns/agent}:snap:<session>  STRING Conversation JSON, written after every turn
    vf:v1:{ns/agent}:callkey:<key>   STRING CallKey JSON: the session a phone call's own id names
    vf:v1:{ns/agent}:handoff:<session> LIST Handoff JSON: caller input held by a pod the call left
    vf:v1:{ns/agent}:tenant:<t>:leases ZSET session id -> lease deadline (ms): the tenant's sessions
    vf:v1:{ns/agent}:tenant:<t>:bucket HASH tokens, ms: the tenant's new-session token bucket
    vf:v1:{ns/agent}:tenant-of:<session> STRING the tenant a session belongs to
    vf:v1:{ns/agent}:rollout         HASH  Rollout: the canary revision and the share of new sessions
                                           it gets (written by the operator; absent: no canary)
    vf:v1:{ns/agent}:revstats:<rev>  HASH  RevisionCounters of one revision, summed over its pods
                                           (each pod adds its increments about once a second)
"""

from __future__ import annotations

KEY_VERSION = "v1"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class AgentKeys:
    def __init__(self, namespace: str, agent: str) -> None:
        if not namespace or not agent:
            raise ValueError("namespace and agent name are required for session keys")
        self.namespace = namespace
        self.agent = agent
        self.prefix = f"vf:{KEY_VERSION}:{{{namespace}/{agent}}}:"

    @property
    def pods(self) -> str:
        return self.prefix + "pods"

    def pod(self, name: str) -> str:
        return f"{self.prefix}pod:{name}"

    def load(self, name: str) -> str:
        return f"{self.prefix}load:{name}"

    def call_key(self, key: str) -> str:
        """A telephony call's own id (an AudioSocket UUID) -> the session it names, for any pod."""
        return f"{self.prefix}callkey:{key}"

    def pin(self, session_id: str) -> str:
        return f"{self.prefix}pin:{session_id}"

    def snapshot(self, session_id: str) -> str:
        return f"{self.prefix}snap:{session_id}"

    def handoff(self, session_id: str) -> str:
        return f"{self.prefix}handoff:{session_id}"

    def tenant_leases(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:leases"

    def tenant_bucket(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:bucket"

    def session_tenant(self, session_id: str) -> str:
        return f"{self.prefix}tenant-of:{session_id}"

    @property
    def rollout(self) -> str:
        return self.prefix + "rollout"

    def revision_stats(self, revision: str) -> str:
        return f"{self.prefix}revstats:{revision}"

    @property
    def match_all(self) -> str:
        """SCAN pattern of every key of this agent."""
        return _glob_escape(self.prefix) + "*"


def agent_pod_name(agent: str, pod: str) -> str:
    """A pod of another agent of the same Redis, as a pin's ``moving_from`` names it (a transfer)."""
    return f"{agent}/{pod}"


def source_of(moving_from: str) -> tuple[str, str] | None:
    """(agent, pod) when a call comes from another agent, None when it moves inside the fleet (pod
    names hold no ``/``)."""
    agent, slash, pod = moving_from.partition("/")
    return (agent, pod) if slash else None
