"""spec.transfer on a real control plane: the API server checks it, the operator warns about targets
that cannot take calls (missing, or on another Redis)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.kube import Cluster, OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e


def agent(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "voicefleet.io/v1alpha1",
            "kind": "VoiceAgent",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("transfer", "field"),
    [
        ({"targets": ["Billing Desk"]}, "spec.transfer.targets[0]"),
        ({"targets": ["billing", "billing"]}, "spec.transfer.targets[1]"),
        ({"targets": []}, "spec.transfer.targets"),
        ({"targets": ["billing"], "contextPolicy": "everything"}, "spec.transfer.contextPolicy"),
    ],
)
def test_a_bad_transfer_block_is_refused_naming_the_field(
    kwok_cluster: Cluster, transfer: dict[str, Any], field: str
) -> None:
    body = agent("bad", transfer=transfer)
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=body, check=False)
    assert out.returncode != 0 and field in out.stderr, out.stderr


def test_the_operator_warns_about_targets_that_cannot_take_calls(
    kwok_cluster: Cluster, operator: OperatorProcess
) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("billing", redis={"url": "redis://billing-redis:6379/0"}), ns)
    kwok_cluster.apply(
        agent("front", transfer={"targets": ["billing", "ghost"], "announce": "One moment."}), ns
    )
    out = kwok_cluster.kubectl("get", "voiceagent", "front", "-n", ns, "-o", "json").stdout
    assert json.loads(out)["spec"]["transfer"]["contextPolicy"] == "summary"  # the default

    def warned() -> str | None:
        for event in kwok_cluster.get("events", namespace=ns)["items"]:
            if event["reason"] == "TransferTargetsUnusable" and event["involvedObject"]["name"] == "front":
                return str(event["message"])
        return None

    message = wait_for(warned, timeout=60, what="the TransferTargetsUnusable event")
    assert "billing: uses another Redis" in message and "ghost: no such VoiceAgent" in message
