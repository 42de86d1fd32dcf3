"""A VoiceAgent's spec.knowledge resolves to the bases of its namespace it names or selects (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent_pod.config import KnowledgeSelectionSpec, LabelSelector
from voicefleet_operator.knowledge_select import matches, resolve
from voicefleet_operator.render import Owner, agent_config
from voicefleet_operator.render import render as render_agent
from voicefleet_operator.spec import VoiceAgentSpec

BASES = {
    "faq": {"tier": "shared"},
    "prices-eu": {"kind": "prices", "region": "eu"},
    "prices-us": {"kind": "prices", "region": "us"},
    "legacy": {"kind": "prices", "retired": "yes"},
}


def selection(**body: Any) -> KnowledgeSelectionSpec:
    return KnowledgeSelectionSpec.model_validate(body)


def names(body: dict[str, Any]) -> list[str]:
    return [b.name for b in resolve(selection(**body), "shop", BASES).knowledge.bases]


def test_by_name_by_label_and_both_once_each_in_name_order() -> None:
    assert names({"bases": ["prices-us", "faq"]}) == ["faq", "prices-us"]
    assert names({"selector": {"matchLabels": {"kind": "prices"}}}) == ["legacy", "prices-eu", "prices-us"]
    both = {"bases": ["faq", "prices-eu"], "selector": {"matchLabels": {"region": "eu"}}}
    assert names(both) == ["faq", "prices-eu"]


def test_set_based_expressions_follow_kubernetes_semantics() -> None:
    expr = [
        {"key": "kind", "operator": "In", "values": ["prices"]},
        {"key": "retired", "operator": "DoesNotExist"},
        {"key": "region", "operator": "NotIn", "values": ["us"]},
    ]
    assert names({"selector": {"matchExpressions": expr}}) == ["prices-eu"]
    assert matches(
        LabelSelector.model_validate(
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}
        ),
        {},
    )
    assert not matches(
        LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "Exists"}]}), {}
    )


def test_refs_carry_the_service_url_labels_and_the_retrieval_settings() -> None:
    body = {"selector": {"matchLabels": {"region": "eu"}}, "baseLabelFromMetadata": "region", "topK": 3}
    out = resolve(selection(**body, partitionFromMetadata="tenant", mode="both", budgetMs=80), "shop", BASES)
    (ref,) = out.knowledge.bases
    assert ref.url == "http://kb-prices-eu.shop.svc:8080"
    assert ref.labels == {"kind": "prices", "region": "eu"}
    k = out.knowledge
    assert (k.partition_from_metadata, k.base_label_from_metadata, k.mode, k.top_k, k.budget_ms) == (
        "tenant",
        "region",
        "both",
        3,
        80,
    )


def test_named_bases_that_do_not_exist_are_reported_and_left_out() -> None:
    out = resolve(selection(bases=["faq", "gone"]), "shop", BASES)
    assert [b.name for b in out.knowledge.bases] == ["faq"] and out.missing == ("gone",)


def test_a_selection_needs_bases_or_a_selector() -> None:
    with pytest.raises(ValidationError, match="knowledge needs bases or a selector"):
        selection(topK=3)


def test_the_resolved_bases_reach_the_pod_config_and_change_its_hash() -> None:
    spec = VoiceAgentSpec.model_validate({"knowledge": {"selector": {"matchLabels": {"region": "eu"}}}})
    owner = Owner("desk", "shop", "uid-1")
    knowledge = resolve(spec.knowledge, "shop", BASES).knowledge
    assert agent_config(owner, spec, "hi", knowledge).knowledge == knowledge
    with_kb = render_agent(owner, spec, "hi", 1, "redis://r:6379", knowledge)
    assert '"http://kb-prices-eu.shop.svc:8080"' in with_kb.config_map["data"]["agent.json"]
    relabelled = resolve(spec.knowledge, "shop", {**BASES, "prices-us": {"region": "eu"}}).knowledge
    assert render_agent(owner, spec, "hi", 1, "redis://r:6379", relabelled).config_hash != with_kb.config_hash
