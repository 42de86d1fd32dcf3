"""The operator's side of transfers: the spec reaches the pods, and unusable targets are named."""

from __future__ import annotations

from agent_pod.config import AgentConfig
from voicefleet_operator.render import Owner, render
from voicefleet_operator.spec import VoiceAgentSpec
from voicefleet_operator.transfer_check import target_problems

OWNER = Owner(name="front", namespace="ns1", uid="u-1")


def spec(**kw: object) -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate(kw)


def test_the_transfer_block_is_rendered_into_the_pod_config() -> None:
    front = spec(transfer={"targets": ["billing"], "contextPolicy": "none", "announce": "One moment."})
    children = render(OWNER, front, "prompt", 1, "redis://redis:6379/0")
    config = AgentConfig.model_validate_json(children.config_map["data"]["agent.json"])
    assert config.transfer is not None
    assert (config.transfer.targets, config.transfer.context_policy) == (["billing"], "none")
    assert render(OWNER, spec(), "prompt", 1, "redis://redis:6379/0") != children


def test_targets_that_are_missing_or_on_another_redis_are_named() -> None:
    front = spec(transfer={"targets": ["billing", "sales", "ghost"]}, redis={"url": "redis://shared:6379/0"})
    targets = {
        "billing": spec(redis={"url": "redis://shared:6379/0"}),
        "sales": spec(redis={"url": "redis://other:6379/0"}),
        "ghost": None,
    }
    assert target_problems(front, targets) == [
        "sales: uses another Redis (spec.redis differs), so calls cannot move there",
        "ghost: no such VoiceAgent in this namespace",
    ]
    assert target_problems(spec(), {}) == []
