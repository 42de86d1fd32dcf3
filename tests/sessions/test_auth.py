"""The authenticated session API, tried as an attacker would, on two real pods sharing a real Redis.

Credentials: API keys from a keyring file (as the Secret mounts it), RS256 JWTs whose key is served
by a real JWKS endpoint on loopback, and browser keys minted by the fleet. Quotas are fleet-wide:
the two pods count one tenant's sessions together.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import grpc
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY

from agent_pod.client.grpc_client import GrpcCaller
from agent_pod.client.webrtc_client import WebRTCCaller
from agent_pod.config import Scope
from agent_pod.runtime import Pod
from agent_pod.sessions import auth as auth_module
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.settings import PodSettings
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer
from tests.support.wait import async_wait_for
from voicefleet.v1 import session_pb2, session_pb2_grpc

ISSUER = "https://idp.test"


class Secured:
    """Two pods with auth required, their keys, and the identity provider's signing key."""

    def __init__(
        self, workdir: Path, redis: RedisServer, jwks_url: str, signing_key: rsa.RSAPrivateKey
    ) -> None:
        self.workdir = workdir
        self.redis = redis
        self.signing_key = signing_key
        creds = workdir / "creds" / "api-keys"
        creds.mkdir(parents=True)
        self.keyring_path = creds / "keyring.json"
        self.keys: dict[str, str] = {}
        entries = []
        grants: list[tuple[str, str, list[Scope], int]] = [
            ("acme", "acme", ["sessions:create", "sessions:resume"], 0),
            ("globex", "globex", ["sessions:create", "sessions:resume"], 0),
            ("issuer", "acme", ["sessions:create", "sessions:resume", "keys:issue"], 0),
            ("resume_only", "acme", ["sessions:resume"], 0),
            ("expired", "acme", ["sessions:create"], int(time.time()) - 10),
        ]
        for name, tenant, scopes, expires in grants:
            key, entry = new_api_key(tenant, scopes, expires)
            self.keys[name] = key
            entries.append(entry)
        self.keyring_path.write_text(json.dumps(Keyring(keys=entries).dump()))
        key_file = workdir / "resume.key"
        key_file.write_bytes(b"auth-test-key-0123456789abcdef")
        self.config = synthetic_config(
            agent="auth-" + uuid.uuid4().hex[:6],
            namespace="auth",
            transport={"webrtc": {"enabled": True}},
            auth={
                "required": True,
                "apiKeysSecretRef": {"name": "api-keys", "key": "keyring.json"},
                "jwt": {"jwksUrl": jwks_url, "issuer": ISSUER, "audience": "voicefleet"},
                "tenantQuotas": {"acme": {"maxConcurrentSessions": 2, "sessionsPerMinute": 60, "burst": 5}},
                "cors": {"allowedOrigins": ["https://app.example"]},
            },
        )
        self.settings: dict[str, Any] = {
            "bind_host": "127.0.0.1",
            "redis_url": redis.url,
            "resume_key_file": key_file,
            "credentials_dir": workdir / "creds",
            "log_format": "text",
        }
        self.pods: list[Pod] = []

    async def add(self, name: str) -> Pod:
        pod = Pod(PodSettings(pod_name=name, **self.settings), self.config, pod_ports())
        await pod.start()
        self.pods.append(pod)
        return pod

    def token(self, **claims: Any) -> str:
        body = {
            "iss": ISSUER,
            "aud": "voicefleet",
            "tenant": "globex",
            "scope": "sessions:create",
            "exp": int(time.time()) + 60,
            **claims,
        }
        return jwt.encode(body, self.signing_key, algorithm="RS256", headers={"kid": "idp-1"})


@pytest.fixture
async def secured(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Secured]:
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwks = {"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}

    async def serve_jwks(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.add_routes([web.get("/jwks.json", serve_jwks)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json"
    fleet = Secured(tmp_path, redis_server, url, signing_key)
    await fleet.add("pod-a")
    await fleet.add("pod-b")
    try:
        yield fleet
    finally:
        for pod in fleet.pods:
            await pod.stop()
        await runner.cleanup()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def post(
    url: str, key: str | None = None, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any], Any]:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as http, http.post(url, json=body or {}, headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def create(pod: Pod, key: str | None) -> tuple[int, dict[str, Any], Any]:
    return await post(pod.http_url + "/v1/sessions", key)


async def test_create_needs_a_known_unexpired_key_with_the_scope(secured: Secured) -> None:
    pod = secured.pods[0]
    real = secured.keys["acme"]
    key_id = real.split(".")[0]
    forged = f"{key_id}.{'A' * 43}"  # a known id with a guessed secret
    before = counter("voicefleet_auth_refusals_total", reason="unknown_key")
    for key, status, text in [
        (None, 401, "credential is required"),
        ("not-a-key", 401, "neither an API key nor a JWT"),
        ("vfk_short.x", 401, "malformed"),
        (forged, 401, "not known"),
        (secured.keys["expired"], 401, "expired"),
        (secured.keys["resume_only"], 403, "sessions:create"),
    ]:
        code, _, body = await create(pod, key)
        assert (code, text in body["error"]["message"]) == (status, True), (key, body)
    assert counter("voicefleet_auth_refusals_total", reason="unknown_key") == before + 1
    code, _, grant = await create(pod, real)
    assert code == 201 and grant["resumeToken"]

    channel = grpc.aio.insecure_channel(pod.grpc_address)
    stub = session_pb2_grpc.SessionServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateSession(session_pb2.CreateSessionRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateSession(
                session_pb2.CreateSessionRequest(),
                metadata=(("authorization", f"Bearer {secured.keys['resume_only']}"),),
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        grant_msg = await stub.CreateSession(
            session_pb2.CreateSessionRequest(), metadata=(("authorization", f"Bearer {real}"),)
        )
        assert grant_msg.session_id
    finally:
        await channel.close()


async def test_media_opens_with_the_grants_token_never_with_a_session_id_alone(secured: Secured) -> None:
    pod = secured.pods[0]
    with pytest.raises(ConnectionError, match="UNAUTHENTICATED"):
        async with GrpcCaller(pod.grpc_address):
            pass
    async with GrpcCaller(pod.grpc_address, api_key=secured.keys["acme"]) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
    with pytest.raises(ConnectionError, match="401"):
        async with WebRTCCaller(pod.http_url + "/v1/webrtc"):
            pass
    code, _, grant = await create(pod, secured.keys["acme"])
    assert code == 201
    owner = next(p for p in secured.pods if p.http_url in grant["webrtcUrl"])
    # The session id alone opens nothing; the grant's resume token does.
    with pytest.raises(ConnectionError, match="401"):
        async with WebRTCCaller(grant["webrtcUrl"], session_id=grant["sessionId"]):
            pass
    async with WebRTCCaller(
        grant["webrtcUrl"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
    ) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 15)
        assert owner.hub is not None and [live.id for live in owner.hub.live()] == [grant["sessionId"]]


async def test_jwts_are_verified_against_the_issuers_jwks(secured: Secured) -> None:
    pod = secured.pods[1]
    code, _, grant = await create(pod, secured.token())
    assert code == 201, grant
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = secured.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": ISSUER,
        "aud": "voicefleet",
        "tenant": "globex",
        "scope": "sessions:create",
        "exp": int(time.time()) + 60,
    }
    bad = {
        "expired": secured.token(exp=int(time.time()) - 60),
        "wrong issuer": secured.token(iss="https://evil.test"),
        "wrong audience": secured.token(aud="someone-else"),
        "no tenant": secured.token(tenant=None),
        "forged signature": jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "idp-1"}),
        "alg none": jwt.encode(claims, cast(Any, None), algorithm="none", headers={"kid": "idp-1"}),
        "public key as HMAC secret": _hs256_with_public_key(claims, public_pem),
    }
    for what, token in bad.items():
        code, _, body = await create(pod, token)
        assert code == 401, (what, body)
    code, _, body = await create(pod, secured.token(scope="sessions:resume"))
    assert code == 403 and "sessions:create" in body["error"]["message"]


def _hs256_with_public_key(claims: dict[str, Any], public_pem: bytes) -> str:
    """The algorithm-confusion attack: an HS256 token keyed with the issuer's public key."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "idp-1"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


async def test_a_web_page_works_with_a_short_lived_browser_key(secured: Secured) -> None:
    pod_a, pod_b = secured.pods
    origin = {"Origin": "https://app.example"}
    code, _, body = await post(pod_a.http_url + "/v1/keys", secured.keys["acme"], **origin)
    assert code == 403  # minting needs keys:issue
    code, headers, minted = await post(
        pod_a.http_url + "/v1/keys", secured.keys["issuer"], {"ttlSeconds": 60}, **origin
    )
    assert code == 201 and minted["tenant"] == "acme"
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert 0 < minted["expiresUnix"] - time.time() <= 61
    # Any pod of the fleet takes it; it cannot mint further keys.
    code, _, grant = await create(pod_b, minted["key"])
    assert code == 201, grant
    code, _, _ = await post(pod_b.http_url + "/v1/keys", minted["key"])
    assert code == 403
    tampered = minted["key"][:-4] + ("AAAA" if not minted["key"].endswith("AAAA") else "BBBB")
    assert (await create(pod_b, tampered))[0] == 401
    assert pod_a.gate is not None
    gate_auth = pod_a.gate.auth
    expired = jwt.encode(
        {
            "iss": gate_auth.issuer,
            "aud": gate_auth.issuer,
            "tenant": "acme",
            "scope": "sessions:create",
            "exp": int(time.time()) - 30,
        },
        gate_auth._browser_key,
        algorithm="HS256",
        headers={"kid": "voicefleet-browser"},
    )
    code, _, body = await create(pod_b, expired)
    assert code == 401 and "expired" in body["error"]["message"]
    # Another origin gets no CORS grant, so a browser there cannot read the answer.
    async with aiohttp.ClientSession() as http:
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        async with http.options(pod_a.http_url + "/v1/sessions", headers=preflight) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with http.options(pod_a.http_url + "/v1/sessions", headers={**preflight, **origin}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()


async def test_another_tenants_key_cannot_resume_a_session(secured: Secured) -> None:
    pod = secured.pods[0]
    code, _, grant = await create(pod, secured.keys["acme"])
    assert code == 201
    resume = f"{pod.http_url}/v1/sessions/{grant['sessionId']}/resume"
    before = counter("voicefleet_auth_refusals_total", reason="tenant")
    code, _, body = await post(resume, secured.keys["globex"], {"resumeToken": grant["resumeToken"]})
    assert code == 403 and "another tenant" in body["error"]["message"]
    assert counter("voicefleet_auth_refusals_total", reason="tenant") == before + 1
    code, _, body = await post(resume, None, {"resumeToken": grant["resumeToken"]})
    assert code == 401
    code, _, again = await post(resume, secured.keys["resume_only"], {"resumeToken": grant["resumeToken"]})
    assert code == 200 and again["sessionId"] == grant["sessionId"]


async def test_a_tenant_over_its_quota_is_refused_while_others_are_served(secured: Secured) -> None:
    pod_a, pod_b = secured.pods
    acme, globex = secured.keys["acme"], secured.keys["globex"]
    before = counter("voicefleet_quota_refusals_total", tenant="acme", limit="concurrency")
    # The quota is fleet-wide: one session through each pod fills acme's two.
    first = await create(pod_a, acme)
    second = await create(pod_b, acme)
    assert (first[0], second[0]) == (201, 201)
    code, headers, body = await create(pod_a, acme)
    assert code == 429 and body["error"]["code"] == "resource_exhausted"
    assert 1 <= int(headers["Retry-After"]) <= 31
    assert counter("voicefleet_quota_refusals_total", tenant="acme", limit="concurrency") == before + 1
    channel = grpc.aio.insecure_channel(pod_b.grpc_address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
                session_pb2.CreateSessionRequest(), metadata=(("authorization", f"Bearer {acme}"),)
            )
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert int(dict(refused.value.trailing_metadata() or ())["retry-after"]) >= 1
    finally:
        await channel.close()
    # Healthy callers of another tenant go on, on both pods.
    assert [(await create(pod, globex))[0] for pod in (pod_a, pod_b, pod_a)] == [201, 201, 201]
    # A call that ends gives its slot back at once.
    grant = first[2]
    async with GrpcCaller(
        grant["grpcAddress"], session_id=grant["sessionId"], resume_token=grant["resumeToken"]
    ) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
        await call.end()
    code, _, _ = await async_wait_for(
        lambda: _created(pod_b, acme), timeout=5, what="acme's slot to come back"
    )
    assert code == 201


async def _created(pod: Pod, key: str) -> tuple[int, dict[str, Any], Any] | None:
    result = await create(pod, key)
    return result if result[0] == 201 else None


async def test_a_resume_token_is_dead_once_its_call_ended(secured: Secured) -> None:
    pod = secured.pods[0]
    async with GrpcCaller(pod.grpc_address, api_key=secured.keys["globex"]) as call:
        call.send_text("hello")
        await call.recorder.wait(lambda s: len(s.agent_texts) >= 1, 10)
        session_id, token = call.session_id, call.recorder.summary.resume_token
        await call.end()
    assert token
    with pytest.raises(ConnectionError, match="NOT_FOUND"):
        async with GrpcCaller(pod.grpc_address, session_id=session_id, resume_token=token):
            pass
    with pytest.raises(ConnectionError, match="404"):
        async with WebRTCCaller(
            pod.http_url + f"/v1/sessions/{session_id}/webrtc", session_id=session_id, resume_token=token
        ):
            pass
    resume = f"{pod.http_url}/v1/sessions/{session_id}/resume"
    code, _, _ = await post(resume, secured.keys["globex"], {"resumeToken": token})
    assert code == 404
    # One spelling per token: other spellings of the same expiry are refused before any lookup.
    version, expires, signature = token.split(".")
    for spelling in (
        f"{version}.0{expires}.{signature}",
        f"{version}.{expires.translate(_ARABIC)}.{signature}",
        f"{token}\n",
    ):
        code, _, body = await post(resume, secured.keys["globex"], {"resumeToken": spelling})
        assert code == 401 and "malformed" in body["error"]["message"], spelling


_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


async def test_a_rotated_keyring_takes_effect_without_a_restart(secured: Secured) -> None:
    pod = secured.pods[0]
    new_key, entry = new_api_key("acme", ["sessions:create"])
    assert (await create(pod, new_key))[0] == 401
    keyring = Keyring.model_validate_json(secured.keyring_path.read_bytes())
    keyring.keys = [e for e in keyring.keys if e.tenant != "globex"] + [entry]
    secured.keyring_path.write_text(json.dumps(keyring.dump()))
    await async_wait_for(
        lambda: _created(pod, new_key), timeout=auth_module.KEYRING_RECHECK_SECONDS + 5, what="the new key"
    )
    assert (await create(pod, secured.keys["globex"]))[0] == 401  # the removed key is dead too
