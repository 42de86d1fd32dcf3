"""Which bases and partitions a call searches (pure): the agent's knowledge config narrowed by the
call's metadata (region, tenant ...)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import KnowledgeBaseRef, KnowledgeSpec


@dataclass(frozen=True)
class Route:
    bases: list[KnowledgeBaseRef]
    partitions: list[str] | None  # besides the shared one; None: every partition


def route(spec: KnowledgeSpec, metadata: dict[str, str]) -> Route:
    """A base labelled with ``baseLabelFromMetadata`` serves only calls whose metadata carries the same
    value; unlabelled bases serve every call. A call missing the partition field searches the shared
    partition only: an unknown tenant must not read every tenant's documents."""
    bases = list(spec.bases)
    if label := spec.base_label_from_metadata:
        wanted = metadata.get(label)
        bases = [b for b in bases if label not in b.labels or b.labels[label] == wanted]
    partitions: list[str] | None = None
    if field := spec.partition_from_metadata:
        value = metadata.get(field, "")
        partitions = [value] if value else []
    return Route(bases=bases, partitions=partitions)
