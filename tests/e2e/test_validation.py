"""Invalid VoiceAgents are refused by the API server itself, with a message naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import Cluster

pytestmark = pytest.mark.e2e

TOOL = {"name": "book", "description": "Book a slot.", "endpoint": {"url": "http://booking:8080/book"}}

SENTINEL = {"masterName": "voice", "addresses": ["sentinel:26379"]}

# Flows (docs/flows.md): every node and tool a flow names must exist.
_GO = {"function": "go_on", "to": "desk"}
FLOW_INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "flow transition to an unknown node",
        {
            "flow": {
                "initialNode": "desk",
                "nodes": [{"name": "desk", "transitions": [{**_GO, "to": "attic"}]}],
            }
        },
        "flow transition to must name a node of flow.nodes",
    ),
    (
        "flow initialNode unknown",
        {"flow": {"initialNode": "lobby", "nodes": [{"name": "desk"}]}},
        "spec.flow.initialNode",
    ),
    (
        "flow node tool not in spec.tools",
        {"tools": [TOOL], "flow": {"initialNode": "desk", "nodes": [{"name": "desk", "tools": ["refund"]}]}},
        "flow.nodes[].tools must name tools of spec.tools",
    ),
    (
        "flow onTool not a node tool",
        {
            "tools": [TOOL],
            "flow": {
                "initialNode": "desk",
                "nodes": [{"name": "desk", "transitions": [{"onTool": "book", "to": "desk"}]}],
            },
        },
        "flow transition onTool must name one of the node's tools",
    ),
    (
        "flow transition with two triggers",
        {
            "flow": {
                "initialNode": "desk",
                "nodes": [{"name": "desk", "transitions": [{**_GO, "onTool": "book"}]}],
            }
        },
        "exactly one of onTool or function",
    ),
]
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("min above max", {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling"),
    ("unknown STT provider", {"pipeline": {"stt": {"provider": "whisper"}}}, "spec.pipeline.stt.provider"),
    (
        "no transport",
        {"transport": {"webrtc": {"enabled": False}, "grpc": {"enabled": False}}},
        "spec.transport",
    ),
    (
        "literal API key",
        {"pipeline": {"llm": {"provider": "openai", "options": {"apiKey": "sk-x"}}}},
        "spec.pipeline.llm.options",
    ),
    ("two prompt sources", {"prompt": {"inline": "hi", "configMapRef": {"name": "p"}}}, "spec.prompt"),
    ("no prompt source", {"prompt": {"version": "v3"}}, "spec.prompt"),
    (
        "fallback repeats primary",
        {"pipeline": {"tts": {"provider": "espeak", "fallback": [{"provider": "espeak"}]}}},
        "spec.pipeline.tts",
    ),
    ("unknown field", {"replicas": 1, "apiKey": "x"}, "spec.apiKey"),
    (
        "port range reversed",
        {"transport": {"webrtc": {"udpPortRange": {"min": 50000, "max": 40000}}}},
        "spec.transport.webrtc.udpPortRange",
    ),
    (
        "tool arguments not an object",
        {"tools": [{**TOOL, "parameters": {"type": "string"}}]},
        "spec.tools[0].parameters.type",
    ),
    ("duplicate tool names", {"tools": [TOOL, {**TOOL, "description": "again"}]}, "spec.tools[1]"),
    ("negative replicas", {"replicas": -1}, "spec.replicas"),
    ("tool name with spaces", {"tools": [{**TOOL, "name": "book a slot"}]}, "spec.tools[0].name"),
    (
        "tool URL not http",
        {"tools": [{**TOOL, "endpoint": {"url": "file:///etc/passwd"}}]},
        "spec.tools[0].endpoint.url",
    ),
    (
        "barge-in threshold too small",
        {"pipeline": {"bargeIn": {"minSpeechMs": 5}}},
        "spec.pipeline.bargeIn.minSpeechMs",
    ),
    (
        "phrase both cancel and backchannel",
        {"pipeline": {"bargeIn": {"cancelPhrases": ["stop", "Okay"], "backchannels": ["okay"]}}},
        "spec.pipeline.bargeIn",
    ),
    (
        "cancel phrase without a word",
        {"pipeline": {"bargeIn": {"cancelPhrases": ["stop", "?!"]}}},
        "spec.pipeline.bargeIn.cancelPhrases[1]",
    ),
    (
        "divergence threshold above 1",
        {"pipeline": {"compliance": {"divergenceThreshold": 1.5}}},
        "spec.pipeline.compliance.divergenceThreshold",
    ),
    ("redis URL with password", {"redis": {"url": "redis://:hunter2@redis:6379/0"}}, "spec.redis.url"),
    (
        "redis sentinel with a url",
        {"redis": {"url": "redis://r:6379", "sentinel": SENTINEL}},
        "spec.redis.sentinel",
    ),
    (
        "redis cluster behind sentinel",
        {"redis": {"cluster": True, "sentinel": SENTINEL}},
        "spec.redis.cluster",
    ),
    ("redis cluster without a seed node", {"redis": {"cluster": True}}, "spec.redis.cluster"),
    (
        "redis TLS on a plain url",
        {"redis": {"url": "redis://r:6379", "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}}},
        "spec.redis.tls",
    ),
    (
        "sentinel address without a port",
        {"redis": {"sentinel": {"masterName": "m", "addresses": ["sentinel"]}}},
        "spec.redis.sentinel.addresses[0]",
    ),
    (
        "opus complexity above 10",
        {"transport": {"webrtc": {"opusComplexity": 11}}},
        "spec.transport.webrtc.opusComplexity",
    ),
    ("grpc port privileged", {"transport": {"grpc": {"port": 80}}}, "spec.transport.grpc.port"),
    ("temperature out of range", {"pipeline": {"llm": {"temperature": 3}}}, "spec.pipeline.llm.temperature"),
    ("wrong type", {"session": {"maxDurationSeconds": "an hour"}}, "spec.session.maxDurationSeconds"),
    ("auth required without keys", {"auth": {"required": True}}, "spec.auth"),
    ("jwt without a key source", {"auth": {"jwt": {"issuer": "https://idp"}}}, "spec.auth.jwt"),
    ("jwks URL not http", {"auth": {"jwt": {"jwksUrl": "file:///keys"}}}, "spec.auth.jwt.jwksUrl"),
    (
        "quota of zero sessions",
        {"auth": {"tenantQuotas": {"acme": {"maxConcurrentSessions": 0}}}},
        "spec.auth.tenantQuotas.acme.maxConcurrentSessions",
    ),
    (
        "JWT algorithm none",
        {"auth": {"jwt": {"jwksUrl": "https://i", "algorithms": ["none"]}}},
        "spec.auth.jwt.algorithms[0]",
    ),
    ("unknown rollout strategy", {"rollout": {"strategy": "bluegreen"}}, "spec.rollout.strategy"),
    (
        "canary weights repeat",
        {"rollout": {"strategy": "canary", "steps": [{"weight": 20}, {"weight": 20}]}},
        "spec.rollout.steps: Invalid value: rollout.steps weights must increase strictly",
    ),
    (
        "canary weights go down",
        {"rollout": {"strategy": "canary", "steps": [{"weight": 50}, {"weight": 10}]}},
        "spec.rollout.steps: Invalid value: rollout.steps weights must increase strictly",
    ),
    ("no canary steps", {"rollout": {"strategy": "canary", "steps": []}}, "spec.rollout.steps"),
    (
        "too many canary steps",
        {"rollout": {"strategy": "canary", "steps": [{"weight": w} for w in range(1, 22)]}},
        "spec.rollout.steps",
    ),
    ("canary weight zero", {"rollout": {"steps": [{"weight": 0}]}}, "spec.rollout.steps[0].weight"),
    ("canary weight above 100", {"rollout": {"steps": [{"weight": 101}]}}, "spec.rollout.steps[0].weight"),
    (
        "canary pause over a day",
        {"rollout": {"steps": [{"weight": 10, "pauseSeconds": 86401}]}},
        "spec.rollout.steps[0].pauseSeconds",
    ),
    ("eval with a rolling update", {"rollout": {"eval": {"suites": ["smoke"]}}}, "spec.rollout.eval"),
    (
        "eval pass rate above 1",
        {"rollout": {"strategy": "canary", "eval": {"suites": ["smoke"], "minPassRate": 1.2}}},
        "spec.rollout.eval.minPassRate",
    ),
    (
        "eval with nothing to run",
        {"rollout": {"strategy": "canary", "eval": {"suites": []}}},
        "rollout.eval needs suites or packs",
    ),
    (
        "eval pack not shipped",
        {"rollout": {"strategy": "canary", "eval": {"packs": ["jailbreaks"]}}},
        "spec.rollout.eval.packs[0]",
    ),
    (
        "eval suite not a ConfigMap name",
        {"rollout": {"strategy": "canary", "eval": {"suites": ["Smoke Suite"]}}},
        "spec.rollout.eval.suites[0]",
    ),
    (
        "turn error rate above 1",
        {"rollout": {"analysis": {"maxTurnErrorRate": 2}}},
        "spec.rollout.analysis.maxTurnErrorRate",
    ),
    (
        "p95 ratio below 1",
        {"rollout": {"analysis": {"maxP95IncreaseOverStable": 0.8}}},
        "spec.rollout.analysis.maxP95IncreaseOverStable",
    ),
    (
        "measurement interval zero",
        {"rollout": {"analysis": {"intervalSeconds": 0}}},
        "spec.rollout.analysis.intervalSeconds",
    ),
    *FLOW_INVALID,
]


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_voiceagent_is_rejected_naming_the_field(
    kwok_cluster: Cluster, case: str, spec: dict[str, Any], field: str
) -> None:
    body = {
        "apiVersion": "voicefleet.io/v1alpha1",
        "kind": "VoiceAgent",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(body), check=False)
    assert out.returncode != 0, f"{case}: the API server accepted it"
    assert field in out.stderr, f"{case}: message does not name {field}: {out.stderr}"


def test_valid_minimal_voiceagent_gets_defaults(kwok_cluster: Cluster) -> None:
    body = {"apiVersion": "voicefleet.io/v1alpha1", "kind": "VoiceAgent", "metadata": {"name": "minimal"}}
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body))
    spec = json.loads(out.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["pipeline"]["stt"]["provider"] == "pocketsphinx"
    assert spec["transport"]["grpc"]["port"] == 50051
    assert spec["session"]["drainTimeoutSeconds"] == 600


def test_explain_documents_fields(kwok_cluster: Cluster) -> None:
    out = kwok_cluster.kubectl("explain", "voiceagent.spec.pipeline.bargeIn.minSpeechMs").stdout
    assert "interrupt" in out
    out = kwok_cluster.kubectl("explain", "voiceagent.spec.autoscaling.bufferSessions").stdout
    assert "Free session slots" in out


def test_redis_sentinel_over_tls_is_accepted(kwok_cluster: Cluster) -> None:
    tls = {"caSecretRef": {"name": "redis-ca", "key": "ca.crt"}, "clientCertSecretName": "redis-client"}
    redis = {"sentinel": {**SENTINEL, "passwordSecretRef": {"name": "auth", "key": "pw"}}, "tls": tls}
    body = {"apiVersion": "voicefleet.io/v1alpha1", "kind": "VoiceAgent", "metadata": {"name": "ha"}}
    body["spec"] = {"redis": redis}
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body))
    assert json.loads(out.stdout)["spec"]["redis"]["sentinel"]["masterName"] == "voice"


def test_example_flow_is_accepted(kwok_cluster: Cluster) -> None:
    example = (Path(__file__).resolve().parents[2] / "examples" / "flow-receptionist.yaml").read_text()
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=example)
    flow = json.loads(out.stdout)["spec"]["flow"]
    assert [n["name"] for n in flow["nodes"]] == ["reception", "booking", "billing"]
    assert flow["nodes"][0]["context"] == "full" and flow["nodes"][2]["context"] == "summary"


def test_canary_rollout_is_accepted_with_defaults(kwok_cluster: Cluster) -> None:
    steps = [{"weight": 5, "pauseSeconds": 60}, {"weight": 25, "pauseSeconds": None}, {"weight": 60}]
    rollout = {"strategy": "canary", "steps": steps, "eval": {"suites": ["smoke", "jailbreak"]}}
    body = {"apiVersion": "voicefleet.io/v1alpha1", "kind": "VoiceAgent", "metadata": {"name": "canary"}}
    body["spec"] = {"rollout": rollout}
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body))
    got = json.loads(out.stdout)["spec"]["rollout"]
    assert got["steps"] == [{"weight": 5, "pauseSeconds": 60}, {"weight": 25}, {"weight": 60}]
    assert got["analysis"]["intervalSeconds"] == 30
    assert got["analysis"]["failureLimit"] == 0
    assert (got["eval"]["minPassRate"], got["eval"]["timeoutSeconds"]) == (1, 600)
