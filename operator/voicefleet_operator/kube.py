"""Kubernetes API calls of the operator (kubernetes.aio, never blocking the loop).

Children are written with server-side apply under one field manager, so a
reconcile that renders the same objects changes nothing, an operator restart
cannot duplicate anything, and conflicting writers are resolved by the API
server instead of by read-modify-write loops.
"""

from __future__ import annotations

import asyncio
import base64
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
            call = self.core.patch_namespaced_config_map
        elif kind == "Service":
            call = self.core.patch_namespaced_service
        elif kind == "Deployment":
            call = self.apps.patch_namespaced_deployment
        elif kind == "PodDisruptionBudget":
            call = self.policy.patch_namespaced_pod_disruption_budget
        else:
            raise ValueError(f"the operator does not apply {kind}")
        await retry_conflicts(lambda: call(name, ns, obj, **kwargs))

    async def create_if_absent(self, secret: dict[str, Any]) -> bool:
        """Creates a Secret unless it exists; never overwrites (a generated key must stay stable)."""
        try:
            body: Any = secret  # the API accepts a manifest dict as well as a V1Secret
            await self.core.create_namespaced_secret(secret["metadata"]["namespace"], body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return (cm.data or {}).get(key)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        try:
            await self.core.patch_namespaced_pod(name, namespace, body, _content_type=MERGE)
        except ApiException as exc:
            if exc.status != 404:  # a pod that is already gone needs no cost
                raise

    async def scale_agent(self, namespace: str, name: str, replicas: int) -> None:
        """Through the scale subresource, the same door HPA, KEDA and kubectl scale use."""
        body = {"spec": {"replicas": replicas}}
        await retry_conflicts(
            lambda: self.custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE
            )
        )


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
