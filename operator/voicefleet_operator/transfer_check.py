"""A warning Event when a VoiceAgent's ``spec.transfer.targets`` cannot take its calls.

Calls are handed over through the shared Redis, so a target must exist in the same namespace and use
the same Redis (the same ``spec.redis``). The pods refuse such a transfer at run time anyway (the
target has no pod in their Redis: ``unknown_target``); this tells the platform engineer at apply time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from .spec import GROUP, PLURAL, VERSION, VoiceAgentSpec


def target_problems(spec: VoiceAgentSpec, targets: Mapping[str, VoiceAgentSpec | None]) -> list[str]:
    """Why each unusable target of ``spec.transfer`` is unusable (``targets``: name -> its spec, None
    when no such VoiceAgent exists in the namespace)."""
    if spec.transfer is None:
        return []
    problems: list[str] = []
    for name in spec.transfer.targets:
        target = targets.get(name)
        if target is None:
            problems.append(f"{name}: no such VoiceAgent in this namespace")
        elif target.redis != spec.redis:
            problems.append(f"{name}: uses another Redis (spec.redis differs), so calls cannot move there")
    return problems


def _spec_of(index: kopf.Index[Any, Any], key: tuple[str, str]) -> VoiceAgentSpec | None:
    for entry in index.get(key, []):
        try:
            return VoiceAgentSpec.model_validate(entry["spec"])
        except ValidationError:
            return None
    return None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")  # type: ignore[arg-type]  # kopf passes indexes as kwargs its Protocols do not list
def check_transfer_targets(
    namespace: str | None, spec: kopf.Spec, body: kopf.Body, voiceagents: kopf.Index[Any, Any], **_: Any
) -> None:
    try:
        own = VoiceAgentSpec.model_validate(dict(spec))
    except ValidationError:
        return  # the reconcile handler reports a malformed spec
    if own.transfer is None:
        return
    assert namespace is not None  # VoiceAgents are namespaced
    targets = {name: _spec_of(voiceagents, (namespace, name)) for name in own.transfer.targets}
    problems = target_problems(own, targets)
    if problems:
        kopf.warn(body, reason="TransferTargetsUnusable", message="; ".join(problems))
