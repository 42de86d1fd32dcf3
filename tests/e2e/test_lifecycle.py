"""A VoiceAgent's life on a real control plane: apply, scale, edit, restart the operator, delete."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from tests.support.kube import Cluster, OperatorProcess
from tests.support.wait import wait_for
from voicefleet_operator.devcluster import REPO

pytestmark = pytest.mark.e2e

EXAMPLE = (REPO / "examples" / "voiceagent.yaml").read_text()
CHILDREN = [
    ("deployment", "{n}"),
    ("service", "{n}"),
    ("service", "{n}-pods"),
    ("poddisruptionbudget", "{n}"),
    ("configmap", "{n}-config"),
    ("secret", "{n}-resume-key"),
]


def absent(cluster: Cluster, kind: str, name: str, ns: str) -> bool:
    return not cluster.exists(kind, name, ns)


def agent(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": name},
        "spec": spec,
    }
    return json.dumps(body)


def ready(cluster: Cluster, name: str, ns: str, replicas: int) -> dict[str, Any]:
    """Waits for status Ready=True with the given ready pod count; returns the VoiceAgent."""

    def check() -> dict[str, Any] | None:
        va = cluster.get("voiceagent", name, ns)
        st = va.get("status", {})
        conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
        ok = (
            conds.get("Ready") == "True"
            and st.get("readyReplicas") == replicas
            and st.get("observedGeneration") == va["metadata"]["generation"]
        )
        return va if ok else None

    return wait_for(check, timeout=60, what=f"{ns}/{name} Ready with {replicas} pods")


def running_pods(cluster: Cluster, name: str, ns: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", namespace=ns)["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("labels", {}).get("voicefleet.io/agent") == name
        and p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]


def test_example_becomes_a_running_fleet(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(EXAMPLE, ns)
    va = ready(kwok_cluster, "receptionist", ns, 2)

    uid = va["metadata"]["uid"]
    for kind, pattern in CHILDREN:
        obj = kwok_cluster.get(kind, pattern.format(n="receptionist"), ns)
        owners = obj["metadata"].get("ownerReferences", [])
        assert [o["uid"] for o in owners] == [uid], f"{kind} is not owned by the VoiceAgent"

    pods = running_pods(kwok_cluster, "receptionist", ns)
    assert len(pods) == 2
    nodes = {n["metadata"]["name"] for n in kwok_cluster.get("nodes")["items"]}
    assert all(p["spec"]["nodeName"] in nodes for p in pods), "pods were not scheduled on the KWOK nodes"
    for p in pods:  # the API server's ServiceAccount admission mounted no token into agent pods
        mounts = [m["mountPath"] for m in p["spec"]["containers"][0].get("volumeMounts", [])]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts

    dep = kwok_cluster.get("deployment", "receptionist", ns)
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["terminationGracePeriodSeconds"] == 1800 + 30  # drainTimeoutSeconds + shutdown margin
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    container = pod_spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    status = va["status"]
    assert status["promptVersion"].startswith("v1@sha256:")
    assert status["selector"] == (
        "app.kubernetes.io/instance=receptionist,app.kubernetes.io/name=voicefleet-agent,"
        "voicefleet.io/agent=receptionist"
    )
    cols = kwok_cluster.kubectl("get", "va", "receptionist", "-n", ns).stdout.split("\n")
    header = ["NAME", "READY", "REPLICAS", "SESSIONS", "CAPACITY", "PROMPT", "PHASE", "WEIGHT", "AGE"]
    assert cols[0].split() == header
    assert cols[1].split()[:4] == ["receptionist", "True", "2", "0"]
    assert cols[1].split()[6:8] == ["Stable", "0"]  # rollout phase and canary weight

    events = kwok_cluster.get("events", namespace=ns)["items"]
    assert any(e["reason"] == "ReadyTrue" and e["involvedObject"]["name"] == "receptionist" for e in events)


def test_kubectl_scale_changes_replicas(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("scaler", replicas=1), ns)
    ready(kwok_cluster, "scaler", ns, 1)

    kwok_cluster.kubectl("scale", "voiceagent/scaler", "-n", ns, "--replicas=3")
    ready(kwok_cluster, "scaler", ns, 3)
    assert kwok_cluster.get("deployment", "scaler", ns)["spec"]["replicas"] == 3
    assert len(running_pods(kwok_cluster, "scaler", ns)) == 3

    scale = json.loads(
        kwok_cluster.kubectl(
            "get", "--raw", f"/apis/voicefleet.io/v1alpha1/namespaces/{ns}/voiceagents/scaler/scale"
        ).stdout
    )
    assert scale["status"]["replicas"] == 3
    assert "voicefleet.io/agent=scaler" in scale["status"]["selector"]

    kwok_cluster.kubectl("scale", "voiceagent/scaler", "-n", ns, "--replicas=0")
    ready(kwok_cluster, "scaler", ns, 0)
    wait_for(lambda: not running_pods(kwok_cluster, "scaler", ns), timeout=30, what="pods gone at 0 replicas")


def test_spec_and_prompt_edits_roll_the_deployment(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.kubectl(
        "create", "configmap", "prompts", "-n", ns, "--from-literal=prompt=You are the first prompt."
    )
    kwok_cluster.apply(
        agent("roller", replicas=2, prompt={"configMapRef": {"name": "prompts"}, "version": "a"}), ns
    )
    first = ready(kwok_cluster, "roller", ns, 2)["status"]["promptVersion"]
    assert first.startswith("a@sha256:")

    def template_hash() -> str:
        dep = kwok_cluster.get("deployment", "roller", ns)
        return str(dep["spec"]["template"]["metadata"]["annotations"]["voicefleet.io/config-hash"])

    hash1 = template_hash()
    config = json.loads(kwok_cluster.get("configmap", "roller-config", ns)["data"]["agent.json"])
    assert config["promptText"] == "You are the first prompt."

    # Editing the referenced ConfigMap rolls the pods (the operator watches prompt ConfigMaps).
    kwok_cluster.kubectl(
        "patch",
        "configmap",
        "prompts",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"prompt": "You are the second prompt."}}),
    )
    hash2 = wait_for(
        lambda: template_hash() if template_hash() != hash1 else None,
        timeout=30,
        what="rollout on prompt edit",
    )
    va = ready(kwok_cluster, "roller", ns, 2)
    wait_for(
        lambda: kwok_cluster.get("voiceagent", "roller", ns)["status"]["promptVersion"] != first,
        timeout=30,
        what="promptVersion follows the rolled-out prompt",
    )

    # A spec edit (TTS voice) rolls again; old ReplicaSets end at 0.
    kwok_cluster.kubectl(
        "patch",
        "voiceagent",
        "roller",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"pipeline": {"tts": {"voice": "en-gb"}}}}),
    )
    wait_for(lambda: template_hash() not in (hash1, hash2), timeout=30, what="rollout on spec edit")
    va = ready(kwok_cluster, "roller", ns, 2)
    progressing = next(c for c in va["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolledOut")
    rs = kwok_cluster.get("replicasets", namespace=ns)["items"]
    assert len(rs) == 3
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 0, 2]


def test_delete_collects_everything(
    kwok_cluster: Cluster, operator: OperatorProcess, redis_server: Any
) -> None:
    import redis

    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("doomed", replicas=2), ns)
    ready(kwok_cluster, "doomed", ns, 2)
    r = redis.Redis.from_url(redis_server.url)
    prefix = f"vf:v1:{{{ns}/doomed}}:"
    r.set(prefix + "snap:s1", "{}")
    r.sadd(prefix + "pods", "p1")

    kwok_cluster.kubectl("delete", "voiceagent", "doomed", "-n", ns, "--timeout=60s")
    for kind, pattern in CHILDREN:
        gone = functools.partial(absent, kwok_cluster, kind, pattern.format(n="doomed"), ns)
        wait_for(gone, timeout=60, what=f"{kind} garbage-collected")
    wait_for(lambda: not running_pods(kwok_cluster, "doomed", ns), timeout=60, what="pods gone")
    assert r.keys(prefix.replace("{", "\\{").replace("}", "\\}") + "*") == []


def test_operator_restart_duplicates_nothing(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("steady", replicas=2), ns)
    ready(kwok_cluster, "steady", ns, 2)

    def snapshot() -> dict[str, tuple[str, str]]:
        out = {}
        for kind in (
            "deployment",
            "service",
            "poddisruptionbudget",
            "configmap",
            "secret",
            "replicaset",
            "pod",
        ):
            for item in kwok_cluster.get(kind, namespace=ns)["items"]:
                meta = item["metadata"]
                if meta["name"] == "kube-root-ca.crt":
                    continue
                out[f"{kind}/{meta['name']}"] = (meta["uid"], meta["resourceVersion"])
        return out

    before = snapshot()
    operator.stop()
    operator.start()
    # Give the restarted operator a full resume + several state checks, then compare.
    wait_for(
        lambda: 'voicefleet_operator_reconciles_total{result="ok",trigger="resume"}' in operator.metrics(),
        timeout=60,
        what="resume reconcile after restart",
    )
    wait_for(
        lambda: float(_metric(operator.metrics(), "voicefleet_operator_observe_seconds_count")) >= 3,
        timeout=60,
        what="three state checks after restart",
    )
    after = snapshot()
    assert after == before, "an operator restart changed or duplicated children"


def _metric(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return line.rsplit(" ", 1)[1]
    return "0"


def test_drifted_children_are_repaired(kwok_cluster: Cluster, operator: OperatorProcess) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("drifty", replicas=1), ns)
    ready(kwok_cluster, "drifty", ns, 1)
    kwok_cluster.kubectl("delete", "deployment", "drifty", "-n", ns)
    kwok_cluster.kubectl("delete", "service", "drifty-pods", "-n", ns)
    wait_for(
        lambda: (
            kwok_cluster.exists("deployment", "drifty", ns)
            and kwok_cluster.exists("service", "drifty-pods", ns)
        ),
        timeout=30,
        what="deleted children recreated",
    )
    ready(kwok_cluster, "drifty", ns, 1)


def test_missing_prompt_configmap_degrades_then_recovers(
    kwok_cluster: Cluster, operator: OperatorProcess
) -> None:
    ns = kwok_cluster.create_namespace()
    kwok_cluster.apply(agent("lost", prompt={"configMapRef": {"name": "nowhere", "key": "prompt"}}), ns)

    def degraded() -> dict[str, Any] | None:
        conds = kwok_cluster.get("voiceagent", "lost", ns).get("status", {}).get("conditions", [])
        return next((c for c in conds if c["type"] == "Degraded" and c["status"] == "True"), None)

    cond = wait_for(degraded, timeout=60, what="Degraded condition")
    assert "nowhere" in cond["message"]
    kwok_cluster.kubectl("create", "configmap", "nowhere", "-n", ns, "--from-literal=prompt=Found.")
    ready(kwok_cluster, "lost", ns, 1)
