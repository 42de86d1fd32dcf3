"""What the trust boundary costs a session create: credential check plus the tenant quota.

Sessions are created one after another through an in-process pod's HTTP session API (the path a
caller's backend takes), with a real Redis; quotas are set high so the quota script runs in full
and never refuses. Variants:
  - open:     no credential, auth not required (no quota for anonymous callers);
  - api key:  an API key from the keyring (SHA-256 + constant-time compare) and the quota script;
  - jwt:      an RS256 JWT checked against a PEM public key, and the quota script;
  - browser:  a fleet-minted HS256 browser key, and the quota script.
Plus the verification alone (no HTTP, no Redis) for each credential kind.

    python -m bench.auth [--creates 500] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_pod.config import AgentConfig
from agent_pod.runtime import Pod
from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.settings import PodSettings
from bench.report import percentile, print_records, write_json
from tests.support.pod import pod_ports, synthetic_config
from tests.support.redis import RedisServer

ISSUER = "https://idp.bench"


def secured_config(jwt_ref: bool) -> AgentConfig:
    auth: dict[str, Any] = {
        "required": True,
        "apiKeysSecretRef": {"name": "api", "key": "keyring.json"},
        # Room for every create of the run: the quota script runs in full, it never refuses.
        "defaultQuota": {"maxConcurrentSessions": 100_000, "sessionsPerMinute": 1_000_000, "burst": 100_000},
    }
    if jwt_ref:
        auth["jwt"] = {"keysSecretRef": {"name": "idp", "key": "public.pem"}, "issuer": ISSUER}
    return synthetic_config(agent="bench-auth-" + uuid.uuid4().hex[:6], auth=auth, sessionsPerPod=100_000)


async def creates(pod: Pod, credential: str | None, count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    out = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            started = time.perf_counter()
            async with http.post(pod.http_url + "/v1/sessions", json={}, headers=headers) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create refused: {r.status} {await r.text()}")
            out.append((time.perf_counter() - started) * 1000)
    return out


async def verify_only(pod: Pod, credential: str, count: int) -> list[float]:
    assert pod.gate is not None
    out = []
    for _ in range(count):
        started = time.perf_counter()
        await pod.gate.auth.authenticate(credential, "sessions:create")
        out.append((time.perf_counter() - started) * 1000)
    return out


async def start_pod(workdir: Path, redis: RedisServer, config: AgentConfig) -> Pod:
    key_file = workdir / "resume.key"
    key_file.write_bytes(b"bench-auth-resume-key-0123456789")
    settings = PodSettings(
        bind_host="127.0.0.1",
        pod_name="bench-auth",
        redis_url=redis.url,
        resume_key_file=key_file,
        credentials_dir=workdir / "creds",
        log_format="text",
    )
    pod = Pod(settings, config, pod_ports())
    await pod.start()
    return pod


async def run(count: int) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="vf-bench-auth-"))
    (workdir / "creds" / "api").mkdir(parents=True)
    (workdir / "creds" / "idp").mkdir(parents=True)
    api_key, entry = new_api_key("acme", ["sessions:create", "keys:issue"])
    (workdir / "creds" / "api" / "keyring.json").write_text(json.dumps(Keyring(keys=[entry]).dump()))
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = signing.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (workdir / "creds" / "idp" / "public.pem").write_bytes(public)
    token = jwt.encode(
        {"iss": ISSUER, "tenant": "globex", "scope": "sessions:create", "exp": int(time.time()) + 3600},
        signing,
        algorithm="RS256",
    )
    redis = RedisServer()
    redis.start()
    records = []
    try:
        open_pod = await start_pod(
            workdir, redis, synthetic_config(agent="bench-open", sessionsPerPod=100_000)
        )
        secured = await start_pod(workdir, redis, secured_config(jwt_ref=True))
        assert secured.gate is not None
        browser, _ = secured.gate.auth.mint_browser_key(
            await secured.gate.auth.authenticate(api_key, "keys:issue"), 3600
        )
        try:
            variants: list[tuple[str, Pod, str | None]] = [
                ("open", open_pod, None),
                ("api key", secured, api_key),
                ("jwt RS256", secured, token),
                ("browser key", secured, browser),
            ]
            for name, pod, credential in variants:
                await creates(pod, credential, 20)  # warm-up
                times = await creates(pod, credential, count)
                verify = await verify_only(pod, credential, count) if credential else []
                records.append(
                    {
                        "credential": name,
                        "create p50 ms": percentile(times, 0.5),
                        "create p99 ms": percentile(times, 0.99),
                        "verify p50 ms": percentile(verify, 0.5) if verify else 0.0,
                        "verify p99 ms": percentile(verify, 0.99) if verify else 0.0,
                    }
                )
        finally:
            await open_pod.stop()
            await secured.stop()
    finally:
        redis.stop()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=500)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    records = asyncio.run(run(args.creates))
    print_records(records)
    write_json(args.json, records)


if __name__ == "__main__":
    main()
