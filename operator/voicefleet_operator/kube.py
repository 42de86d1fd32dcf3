"""Kubernetes API calls of the operator (kubernetes.aio, never blocking the loop).

Children are written with server-side apply under one field manager, so a
reconcile that renders the same objects changes nothing, an operator restart
cannot duplicate anything, and conflicting writers are resolved by the API
server instead of by read-modify-write loops.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from .spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "voicefleet-operator"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
T = TypeVar("T")


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api.close()

    async def apply(self, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        name, ns = meta["name"], meta["namespace"]
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        call: Callable[..., Awaitable[Any]]
        if kind == "ConfigMap":
            call = self.core.patch_namespaced_config_map_without_preload_content
        elif kind == "Service":
            call = self.core.patch_namespaced_service_without_preload_content
        elif kind == "Deployment":
            call = self.apps.patch_namespaced_deployment_without_preload_content
        elif kind == "PodDisruptionBudget":
            call = self.policy.patch_namespaced_pod_disruption_budget_without_preload_content
        else:
            raise ValueError(f"the operator does not apply {kind}")
        await retry_conflicts(lambda: raw(call(name, ns, obj, **kwargs)))

    async def create_if_absent(self, secret: dict[str, Any]) -> bool:
        """Creates a Secret unless it exists; never overwrites (a generated key must stay stable)."""
        ns = secret["metadata"]["namespace"]
        body: Any = secret  # the API takes a manifest dict as well as a V1Secret
        try:
            await raw(self.core.create_namespaced_secret_without_preload_content(ns, body))
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        cm = await raw(
            self.core.read_namespaced_config_map_without_preload_content(name, namespace), missing_ok=True
        )
        return (cm.get("data") or {}).get(key) if cm else None

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        secret = await raw(
            self.core.read_namespaced_secret_without_preload_content(name, namespace), missing_ok=True
        )
        value = (secret.get("data") or {}).get(key) if secret else None
        return base64.b64decode(value).decode() if value is not None else None

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        call = self.core.patch_namespaced_pod_without_preload_content(
            name, namespace, body, _content_type=MERGE
        )
        await raw(call, missing_ok=True)  # a pod that is already gone needs no cost

    async def scale_agent(self, namespace: str, name: str, replicas: int) -> None:
        """Through the scale subresource, the same door HPA, KEDA and kubectl scale use."""
        body = {"spec": {"replicas": replicas}}
        await retry_conflicts(
            lambda: raw(
                self.custom.patch_namespaced_custom_object_scale_without_preload_content(
                    GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE
                )
            )
        )


async def raw(request: Awaitable[Any], missing_ok: bool = False) -> dict[str, Any] | None:
    """The response as plain JSON. Skipping the client's model classes keeps the operator lean:
    deserializing a Deployment builds dozens of pydantic models (tens of MB across a fleet)."""
    response = await request
    data = await response.read()
    if missing_ok and response.status == 404:
        return None
    if response.status >= 400:
        raise ApiException(status=response.status, reason=response.reason, body=data.decode(errors="replace"))
    return json.loads(data) if data else {}


async def retry_conflicts(call: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Retries 409 Conflict and 429/5xx with a short backoff; other errors surface."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return await call()
        except ApiException as exc:
            retriable = exc.status in (409, 429) or (exc.status or 0) >= 500
            if not retriable or attempt == attempts - 1:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
