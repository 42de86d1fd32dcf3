"""What a canary revision adds beside the stable one: its Deployment, ConfigMap and Service, and the
eval Job run against it. Pure functions over the stable rendering (render.render).

The canary is the stable rendering of the new spec under other names, with a ``track: canary`` label
in its selector, so both Deployments keep their own ReplicaSets. The agent Service still selects
every pod of the agent (placement in Redis decides which revision a new session goes to); the
``<name>-canary`` Service selects only canary pods, for the eval Job. When no canary runs, its
Deployment stays at 0 replicas (like an old ReplicaSet), so the operator never needs delete rights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .render import CONFIG_DIR, REVISION_LABEL, Children, Owner, _meta, selector_labels
from .spec import VoiceAgentSpec

TRACK_LABEL = "voicefleet.io/track"
EVAL_FOR_LABEL = "voicefleet.io/eval-for"
EVAL_SUITES_DIR = "/etc/voicefleet/evals"
TERMINATION_LOG = "/dev/termination-log"


def canary_name(agent: str) -> str:
    return f"{agent}-canary"


@dataclass(frozen=True)
class CanaryChildren:
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]

    def all(self) -> list[dict[str, Any]]:
        return [self.config_map, self.service, self.deployment]


def canary_selector(agent: str) -> dict[str, str]:
    return {**selector_labels(agent), TRACK_LABEL: "canary"}


def canary_children(owner: Owner, stable: Children, replicas: int) -> CanaryChildren:
    """The new revision's objects beside the stable ones (``stable`` rendered from the new spec)."""
    name = canary_name(owner.name)
    config_map = copy.deepcopy(stable.config_map)
    config_map["metadata"]["name"] = f"{name}-config"
    deployment = copy.deepcopy(stable.deployment)
    deployment["metadata"]["name"] = name
    deployment["metadata"]["labels"][TRACK_LABEL] = "canary"
    spec = deployment["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": canary_selector(owner.name)}
    template = spec["template"]
    template["metadata"]["labels"][TRACK_LABEL] = "canary"
    for volume in template["spec"]["volumes"]:
        if volume["name"] == "config":
            volume["configMap"]["name"] = config_map["metadata"]["name"]
    service = copy.deepcopy(stable.service)
    service["metadata"]["name"] = name
    service["spec"]["selector"] = canary_selector(owner.name)
    return CanaryChildren(config_map, deployment, service)


def idle_canary(owner: Owner, stable: Children) -> dict[str, Any]:
    """The canary Deployment scaled to 0 (rollback, or after promotion): its pods drain and go."""
    return canary_children(owner, stable, 0).deployment


def eval_job_name(agent: str, revision: str, started_at: float) -> str:
    """One name per eval run (the start time tells a re-run from an old Job); at most 63 characters,
    as the Job controller copies it into a label."""
    return f"{agent[:30].rstrip('-')}-eval-{revision[:8]}-{int(started_at) % 10**8}"


def eval_job(
    owner: Owner, spec: VoiceAgentSpec, revision: str, started_at: float, canary: CanaryChildren
) -> dict[str, Any]:
    """A Job that runs ``voicefleet eval`` against the canary pods through the canary Service.

    The suites come from the ConfigMaps the rollout names (mounted as files, so the Job needs no
    Kubernetes API access), the prompt from the canary's own config (for prompt-leak checks).
    Its summary goes to the termination message, where the operator reads the pass rate."""
    gate = spec.rollout.eval
    assert gate is not None  # only rendered when the rollout has an eval gate
    agent_pod = canary.deployment["spec"]["template"]["spec"]
    container = agent_pod["containers"][0]
    grpc_port = spec.transport.grpc.port
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "config", "configMap": {"name": canary.config_map["metadata"]["name"]}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    suite_dirs = []
    for i, suite in enumerate(gate.suites):
        volumes.append({"name": f"suite-{i}", "configMap": {"name": suite}})
        mounts.append({"name": f"suite-{i}", "mountPath": f"{EVAL_SUITES_DIR}/{suite}", "readOnly": True})
        suite_dirs.append(f"{EVAL_SUITES_DIR}/{suite}")
    command = [
        "voicefleet", "eval", *suite_dirs, *gate.packs,
        "--target", f"{canary.service['metadata']['name']}.{owner.namespace}.svc:{grpc_port}",
        "--agent-config", f"{CONFIG_DIR}/agent.json",
        "--termination-log", TERMINATION_LOG,
    ]  # fmt: skip
    env: list[dict[str, Any]] = [{"name": "VOICEFLEET_LOG_FORMAT", "value": "json"}]
    if gate.api_key_secret_ref is not None:  # `voicefleet eval` reads it when the agent requires auth
        ref = gate.api_key_secret_ref
        env.append(
            {"name": "VOICEFLEET_API_KEY", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "eval",
                "image": gate.image or container["image"],
                "imagePullPolicy": container["imagePullPolicy"],
                "command": command,
                "env": env,
                "volumeMounts": mounts,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
            }
        ],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    for key in ("nodeSelector", "affinity", "tolerations"):
        if key in agent_pod:
            pod_spec[key] = agent_pod[key]
    labels = {EVAL_FOR_LABEL: owner.name, REVISION_LABEL: revision}
    meta = _meta(owner, eval_job_name(owner.name, revision, started_at))
    meta["labels"] = {**meta["labels"], **labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": gate.timeout_seconds,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
