"""Two VoiceAgents ("front" and "billing") of one namespace on one real Redis, as in-process pods.

Both run the synthetic audio pipeline with the real openai SDK against the local OpenAI wire server,
which answers each agent by the marker in its system prompt and records every LLM request (what each
agent's LLM saw). The front desk transfers calls that mention billing with the built-in tool.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_pod.config import AgentConfig, Scope
from agent_pod.runtime import Pod
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.settings import PodSettings
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer
from tests.wire.openai_server import OpenAIServer, PromptRule, PromptScript

NAMESPACE = "transfer"
FRONT_PROMPT = "You are the FRONT desk of Acme."
BILLING_PROMPT = "You are the BILLING desk of Acme."
ANNOUNCE = "Transferring you to billing."
# Ten seconds of agent speech at the synthetic voice's 20 ms per character: longer than quietWaitSeconds.
STORY = "Once upon a time there was a lighthouse keeper who told long stories to every ship. " * 6
# Registered in the transfer targets, but no pod of it ever runs.
GHOST = "ghost-desk"


def agent_config(name: str, prompt: str, server: OpenAIServer, **extra: Any) -> AgentConfig:
    return synthetic_config(
        "hello there",
        agent=name,
        namespace=NAMESPACE,
        promptText=prompt,
        pipeline={"llm": {"provider": "openai", "model": "gpt-local", "baseUrl": server.base_url}},
        session={"idleTimeoutSeconds": 120, "migration": {"followTimeoutSeconds": 5}},
        sessionsPerPod=20,
        **extra,
    )


class Desks:
    """The two agents: pods are added per test (``add``), each agent with its own config."""

    def __init__(
        self, workdir: Path, redis: RedisServer, server: OpenAIServer, policy: str, secured: bool
    ) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.workdir = workdir
        self.keys: dict[str, str] = {}
        auth: dict[str, Any] = {}
        if secured:  # the front desk requires API keys: "caller" may not transfer, "supervisor" may
            creds = workdir / "creds" / "api-keys"
            creds.mkdir(parents=True)
            entries = []
            scopes: dict[str, list[Scope]] = {
                "caller": ["sessions:create", "sessions:resume"],
                "supervisor": ["sessions:transfer"],
            }
            for name, granted in scopes.items():
                self.keys[name], entry = new_api_key("acme", granted)
                entries.append(entry)
            (creds / "keyring.json").write_text(json.dumps(Keyring(keys=entries).dump()))
            auth = {
                "auth": {"required": True, "apiKeysSecretRef": {"name": "api-keys", "key": "keyring.json"}}
            }
        self.front_name, self.billing_name = f"front-{suffix}", f"billing-{suffix}"
        self.redis, self.server = redis, server
        self.key_file = workdir / "resume.key"  # agents keep their own keys: see the billing config
        self.key_file.write_bytes(b"front-resume-key-0123456789abcdef")
        self.billing_key = workdir / "billing.key"
        self.billing_key.write_bytes(b"billing-resume-key-0123456789abcd")
        transfer = {
            "targets": [self.billing_name, GHOST],
            "contextPolicy": policy,
            "announce": ANNOUNCE,
            "quietWaitSeconds": 3,
        }
        self.front = agent_config(self.front_name, FRONT_PROMPT, server, transfer=transfer, **auth)
        self.billing = agent_config(self.billing_name, BILLING_PROMPT, server)
        rules = [
            PromptRule(
                match="billing",
                tool="transfer_call",
                arguments={"target": self.billing_name, "reason": "invoice question"},
            ),
            PromptRule(match="ghost", tool="transfer_call", arguments={"target": GHOST}),
            PromptRule(match="nowhere", tool="transfer_call", arguments={"target": "nowhere"}),
            PromptRule(match="story", reply=STORY),
        ]
        server.script_prompt(PromptScript(marker="FRONT desk", rules=rules))
        self.pods: list[Pod] = []

    async def add(self, config: AgentConfig, name: str) -> Pod:
        key = self.billing_key if config is self.billing else self.key_file
        settings = PodSettings(
            bind_host="127.0.0.1",
            pod_name=name,
            revision="r1",
            redis_url=self.redis.url,
            resume_key_file=key,
            log_format="text",
            credentials_dir=self.workdir / "creds",
        )
        pod = Pod(settings, config, pod_ports())
        await pod.start()
        self.pods.append(pod)
        return pod

    def llm_requests(self, marker: str) -> list[list[dict[str, Any]]]:
        """The messages of every chat request whose system prompt holds ``marker``, in order."""
        out = []
        for rec in self.server.requests:
            if rec.path != "/v1/chat/completions":
                continue
            messages = rec.body.get("messages", [])
            if messages and marker in str(messages[0].get("content", "")):
                out.append(messages)
        return out

    async def close(self) -> None:
        for pod in reversed(self.pods):
            await pod.stop()


@pytest.fixture
def policy() -> str:
    return "full"


@pytest.fixture
def secured() -> bool:
    return False


@pytest.fixture
async def desks(
    tmp_path: Path,
    redis_server: RedisServer,
    openai_server: OpenAIServer,
    policy: str,
    secured: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Desks]:
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    desks = Desks(tmp_path, redis_server, openai_server, policy, secured)
    try:
        yield desks
    finally:
        await desks.close()
