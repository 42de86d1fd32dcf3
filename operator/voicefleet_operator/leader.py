"""Leader election on a coordination.k8s.io Lease around the kopf operator.

kopf's peering pauses *every* operator that sees a peer of equal priority, so
an old and a new operator pod overlapping during a rollout freeze each other.
Here only the Lease holder runs kopf (standalone, no peering); the others wait.
On shutdown the leader gives the Lease up at once, so the new pod of a rollout
takes over within one retry period instead of a whole lease duration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.leaderelection import electionconfig, leaderelection
from kubernetes.aio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.aio.leaderelection.resourcelock.leaselock import LeaseLock

from . import operator_metrics

log = logging.getLogger(__name__)
LEASE_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_SECONDS = 2


class _LeaseLock(LeaseLock):
    """The client's LeaseLock passes ``pretty=True`` on create, which its own (pydantic) API models
    refuse before any request is sent; create the Lease without it."""

    async def create(self, name: str, namespace: str, election_record: LeaderElectionRecord) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name), spec=self.update_lease(election_record)
        )
        try:
            await self.api_instance.create_namespaced_lease(namespace, body)
            return True
        except ApiException as exc:
            log.warning("could not create the leader Lease: %s", exc.reason)
            return False


async def run_as_leader(
    api: client.ApiClient,
    lease_name: str,
    namespace: str,
    identity: str,
    lead: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """Runs ``lead()`` while holding the Lease; returns when ``stop`` is set or leadership is lost."""
    led = asyncio.Event()

    async def started() -> None:
        led.set()
        operator_metrics.IS_LEADER.set(1)
        log.info("acquired leader lease %s/%s as %s", namespace, lease_name, identity)
        try:
            await lead()
        except Exception:
            # The election library runs this as a task nobody awaits: say why before exiting.
            log.exception("the operator stopped with an error")
            raise
        finally:
            stop.set()  # kopf stopped (or failed): let the process exit and be restarted

    async def stopped() -> None:
        operator_metrics.IS_LEADER.set(0)
        log.warning("lost leader lease %s/%s", namespace, lease_name)
        stop.set()

    config = electionconfig.Config(
        _LeaseLock(lease_name, namespace, identity, api),
        lease_duration=LEASE_SECONDS,
        renew_deadline=RENEW_DEADLINE_SECONDS,
        retry_period=RETRY_SECONDS,
        onstarted_leading=started,
        onstopped_leading=stopped,
    )
    election = asyncio.create_task(leaderelection.LeaderElection(config).run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({election, stopping}, return_when=asyncio.FIRST_COMPLETED)
    election.cancel()
    stopping.cancel()
    results = await asyncio.gather(election, stopping, return_exceptions=True)
    if led.is_set():
        await release(api, lease_name, namespace, identity)
        operator_metrics.IS_LEADER.set(0)
    failure = results[0]
    if isinstance(failure, Exception):
        raise RuntimeError("leader election failed") from failure


async def release(api: client.ApiClient, lease_name: str, namespace: str, identity: str) -> None:
    """Hands the Lease back (as client-go's ReleaseOnCancel does): expired, no holder."""
    coordination = client.CoordinationV1Api(api)
    try:
        lease = await coordination.read_namespaced_lease(lease_name, namespace)
        if lease.spec is None or lease.spec.holder_identity != identity:
            return
        now = datetime.now(UTC).isoformat()
        body = {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now}}
        await coordination.patch_namespaced_lease(
            lease_name, namespace, body, _content_type="application/merge-patch+json"
        )
        log.info("released leader lease %s/%s", namespace, lease_name)
    except ApiException as exc:
        log.warning("could not release leader lease: %s", exc.reason)
