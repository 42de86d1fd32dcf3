"""Where eval calls go: a pod started here from a VoiceAgent file, a running pod or Service
(HOST:PORT), or a VoiceAgent in a cluster, whose suites may live in labelled ConfigMaps.

ConfigMap convention: every ConfigMap in the VoiceAgent's namespace labelled
``voicefleet.io/eval-suite-for: <VoiceAgent name>`` holds suites, one per data key ending in
``.yaml``; they run in addition to the suites named on the command line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from voicefleet_operator.render import Owner, agent_config
from voicefleet_operator.spec import GROUP, PLURAL, VERSION, VoiceAgentSpec

from ..config import AgentConfig, AuthSpec
from ..runtime import Pod, Ports
from ..settings import PodSettings
from .loader import load_suite_text
from .scenario import Suite

SUITE_LABEL = "voicefleet.io/eval-suite-for"
VOICEAGENT_KIND = "VoiceAgent"


class TargetError(Exception):
    """The target cannot be used (bad VoiceAgent file, unknown VoiceAgent, pod failed to start)."""


@dataclass
class EvalTarget:
    address: str  # gRPC HOST:PORT the calls dial
    description: str  # for reports: what was evaluated
    api_key: str | None = None
    prompt_text: str | None = None  # the agent's system prompt, when known (not_leaking_prompt)
    suites: list[Suite] = field(default_factory=list)  # found with the target (cluster ConfigMaps)


def agent_config_from_voiceagent(document: Mapping[str, Any], source: str) -> AgentConfig:
    """The AgentConfig the operator would render for this VoiceAgent manifest. The prompt must be
    inline: a ConfigMap-held prompt is only readable from the cluster (use --cluster)."""
    if document.get("kind") != VOICEAGENT_KIND:
        raise TargetError(f"{source}: kind is {document.get('kind')!r}, expected {VOICEAGENT_KIND}")
    metadata = document.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise TargetError(f"{source}: metadata.name is missing")
    try:
        spec = VoiceAgentSpec.model_validate(document.get("spec") or {})
    except ValidationError as exc:
        raise TargetError(f"{source}: invalid VoiceAgent spec:\n{exc}") from None
    if spec.prompt.inline is None:
        raise TargetError(
            f"{source}: spec.prompt.configMapRef: the prompt is in a ConfigMap only the cluster has; "
            "use an inline prompt, or --cluster"
        )
    owner = Owner(name=name, namespace=metadata.get("namespace") or "default", uid="")
    return agent_config(owner, spec, spec.prompt.inline)


def load_voiceagent_file(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise TargetError(f"{path}: cannot read VoiceAgent: {exc}") from None
    agents = [d for d in documents if isinstance(d, dict) and d.get("kind") == VOICEAGENT_KIND]
    if len(agents) != 1:
        raise TargetError(f"{path}: expected one VoiceAgent document, found {len(agents)}")
    return agent_config_from_voiceagent(agents[0], str(path))


def local_pod_config(config: AgentConfig) -> AgentConfig:
    """The agent as a pod on this machine for evals: gRPC only, and open, because it listens on
    loopback alone and the fleet's credentials live in the cluster."""
    transport = config.transport.model_copy(
        update={"webrtc": config.transport.webrtc.model_copy(update={"enabled": False})}
    )
    return config.model_copy(update={"transport": transport, "auth": AuthSpec()})


@asynccontextmanager
async def local_pod(config: AgentConfig) -> AsyncIterator[EvalTarget]:
    """An in-process pod running ``config`` on free loopback ports, stopped on exit."""
    settings = PodSettings(
        bind_host="127.0.0.1", pod_name=f"eval-{config.agent}", log_format="text", redis_url=None
    )
    pod = Pod(settings, local_pod_config(config), Ports(grpc=0, http=0, metrics=0, udp_min=0, udp_max=0))
    try:
        await pod.start()
    except Exception as exc:
        await pod.stop()
        raise TargetError(f"the local agent pod did not start: {exc}") from exc
    try:
        yield EvalTarget(
            address=pod.grpc_address,
            description=f"local pod of {config.agent} ({config.prompt_id})",
            prompt_text=config.prompt_text,
        )
    finally:
        await pod.stop()


def suites_from_config_maps(config_maps: Sequence[Mapping[str, Any]]) -> list[Suite]:
    """Suites held by ConfigMaps (as the API returns them): every data key ending in .yaml."""
    suites: list[Suite] = []
    for cm in sorted(config_maps, key=lambda c: str((c.get("metadata") or {}).get("name", ""))):
        name = (cm.get("metadata") or {}).get("name", "?")
        for key, text in sorted((cm.get("data") or {}).items()):
            if key.endswith(".yaml"):
                suites.append(load_suite_text(text, f"configmap/{name}/{key}"))
    return suites


def service_address(name: str, namespace: str, config: AgentConfig) -> str:
    return f"{name}.{namespace}.svc:{config.transport.grpc.port}"


async def cluster_target(
    name: str, namespace: str, address: str | None = None, api_key: str | None = None
) -> EvalTarget:
    """The VoiceAgent ``name`` read from the cluster (kubeconfig, else in-cluster credentials): its
    prompt, its suites from labelled ConfigMaps, and its Service's gRPC address unless given."""
    return await asyncio.to_thread(_read_cluster, name, namespace, address, api_key)


def _read_cluster(name: str, namespace: str, address: str | None, api_key: str | None) -> EvalTarget:
    # Only --cluster needs the Kubernetes client, which takes a quarter second to import and is
    # not in the agent image (it comes with the `operator` extra).
    try:
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise TargetError(
            "--cluster needs the Kubernetes client: pip install 'voicefleet[operator]', or use --target"
        ) from None

    try:
        config.load_kube_config()
    except (ConfigException, OSError):
        try:
            config.load_incluster_config()
        except ConfigException as exc:
            raise TargetError(f"no Kubernetes credentials (kubeconfig or in-cluster): {exc}") from None
    api = client.ApiClient()
    try:
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        try:
            agent = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            raise TargetError(f"VoiceAgent {namespace}/{name}: {exc.status} {exc.reason}") from None
        document: dict[str, Any] = dict(agent)  # type: ignore[call-overload]  # the client types it as object
        prompt_ref = ((document.get("spec") or {}).get("prompt") or {}).get("configMapRef")
        if prompt_ref:
            key = prompt_ref.get("key", "prompt")
            cm = core.read_namespaced_config_map(prompt_ref["name"], namespace)
            text = (cm.data or {}).get(key)
            if text is None:
                raise TargetError(f"prompt ConfigMap {prompt_ref['name']!r} has no key {key!r}")
            document["spec"] = {**document["spec"], "prompt": {"inline": text}}
        agent_cfg = agent_config_from_voiceagent(document, f"VoiceAgent {namespace}/{name}")
        listed = core.list_namespaced_config_map(namespace, label_selector=f"{SUITE_LABEL}={name}")
        config_maps: list[Mapping[str, Any]] = [
            {"metadata": {"name": cm.metadata.name if cm.metadata else "?"}, "data": cm.data or {}}
            for cm in listed.items
        ]
    finally:
        api.close()
    suites = suites_from_config_maps(config_maps)
    return EvalTarget(
        address=address or service_address(name, namespace, agent_cfg),
        description=f"VoiceAgent {namespace}/{name} ({agent_cfg.prompt_id})",
        api_key=api_key,
        prompt_text=agent_cfg.prompt_text,
        suites=suites,
    )
