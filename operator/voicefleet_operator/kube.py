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


# Concurrent connections to the API server. Each TLS connection holds a 256 KiB read buffer, and
# a burst of reconciles would otherwise open up to the client's default of 100 at once.
MAX_CONNECTIONS = 8

# Only the core kinds the operator writes; the generated per-group API classes are not used
# because importing them costs ~30 MB of bytecode in a process that needs six endpoints.
PATHS = {
    "ConfigMap": "/api/v1/namespaces/{namespace}/configmaps/{name}",
    "Secret": "/api/v1/namespaces/{namespace}/secrets/{name}",
    "Service": "/api/v1/namespaces/{namespace}/services/{name}",
    "Pod": "/api/v1/namespaces/{namespace}/pods/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}",
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
}
APPLIED_KINDS = ("ConfigMap", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget", "Job")


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = MAX_CONNECTIONS
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One API call through the client's auth, TLS and serialization; the answer as plain JSON.
        Skipping the client's model classes keeps the operator lean: deserializing a Deployment
        builds dozens of pydantic models (tens of MB across a fleet)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = await self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return await raw(self.api.call_api(*params, _preload_content=False), missing_ok=missing_ok)

    async def apply(self, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        if kind not in APPLIED_KINDS:
            raise ValueError(f"the operator does not apply {kind}")
        path = PATHS[kind].format(namespace=meta["namespace"], name=meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        await retry_conflicts(lambda: self.request("PATCH", path, obj, query, APPLY))

    async def create_if_absent(self, secret: dict[str, Any]) -> bool:
        """Creates a Secret unless it exists; never overwrites (a generated key must stay stable)."""
        path = f"/api/v1/namespaces/{secret['metadata']['namespace']}/secrets"
        try:
            await self.request("POST", path, secret)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    async def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = PATHS[kind].format(namespace=namespace, name=name)
        return await self.request("GET", path, missing_ok=True)

    async def read_config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        cm = await self._read("ConfigMap", namespace, name)
        return (cm.get("data") or {}).get(key) if cm else None

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        secret = await self._read("Secret", namespace, name)
        value = (secret.get("data") or {}).get(key) if secret else None
        return base64.b64decode(value).decode() if value is not None else None

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        path = PATHS["Pod"].format(namespace=namespace, name=name)
        body = {"metadata": {"annotations": annotations}}
        # A pod that is already gone needs no cost.
        await self.request("PATCH", path, body, content_type=MERGE, missing_ok=True)

    async def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        """Only the replicas of a Deployment whose template must stay as it is (the stable one
        while a canary runs)."""
        path = PATHS["Deployment"].format(namespace=namespace, name=deployment)
        body = {"spec": {"replicas": replicas}}
        query = [("fieldManager", FIELD_MANAGER)]
        await retry_conflicts(lambda: self.request("PATCH", path, body, query, MERGE))

    async def service_request(
        self, method: str, namespace: str, service: str, port: int, path: str, body: Any = None
    ) -> dict[str, Any] | None:
        """``method`` ``path`` of a Service through the API server's service proxy: works wherever the
        API server is reachable (an operator outside the cluster too) and needs only services/proxy."""
        proxy = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        return await self.request(method, proxy, body)

    async def scale_agent(self, namespace: str, name: str, replicas: int) -> None:
        """Through the scale subresource, the same door HPA, KEDA and kubectl scale use."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/scale"
        body = {"spec": {"replicas": replicas}}
        await retry_conflicts(lambda: self.request("PATCH", path, body, content_type=MERGE))


async def raw(request: Awaitable[Any], missing_ok: bool = False) -> dict[str, Any] | None:
    """The response body as plain JSON; API errors as ApiException."""
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
