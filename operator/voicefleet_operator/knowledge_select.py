"""Which KnowledgeBases a VoiceAgent's calls search: its spec.knowledge (names and/or a label selector)
resolved against the bases of its namespace, into the pod's config (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent_pod.config import (
    KnowledgeBaseRef,
    KnowledgeRetrieval,
    KnowledgeSelectionSpec,
    KnowledgeSpec,
    LabelSelector,
)

from .render_knowledge import service_url


@dataclass(frozen=True)
class Resolution:
    knowledge: KnowledgeSpec
    missing: tuple[str, ...]  # bases named in the spec that do not exist (yet)


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics (NotIn and DoesNotExist hold for an absent key)."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def resolve(
    selection: KnowledgeSelectionSpec, namespace: str, bases: Mapping[str, Mapping[str, str]]
) -> Resolution:
    """``bases``: the namespace's KnowledgeBases, name -> labels. Named and selected bases, once each,
    by name (a stable order keeps the rendered config, and so the pods, unchanged)."""
    chosen = {name for name in selection.bases if name in bases}
    if selection.selector is not None:
        chosen |= {name for name, labels in bases.items() if matches(selection.selector, labels)}
    refs = [
        KnowledgeBaseRef(name=name, url=service_url(name, namespace), labels=dict(bases[name]))
        for name in sorted(chosen)
    ]
    retrieval = selection.model_dump(include=set(KnowledgeRetrieval.model_fields))
    return Resolution(
        knowledge=KnowledgeSpec(bases=refs, **retrieval),
        missing=tuple(name for name in selection.bases if name not in bases),
    )
