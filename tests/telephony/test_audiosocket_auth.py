"""AudioSocket calls on a fleet that requires a credential: admitted with the configured API key."""

from __future__ import annotations

import json
from pathlib import Path

from agent_pod.sessions.auth import Keyring, new_api_key
from agent_pod.telephony import audiosocket_wire as wire
from tests.support.redis import RedisServer
from tests.telephony.test_audiosocket import admitted, pbx, start_pod

AUTH = {"required": True, "apiKeysSecretRef": {"name": "api-keys", "key": "keyring.json"}}


def _credentials(tmp_path: Path) -> Path:
    creds = tmp_path / "creds"
    (creds / "api-keys").mkdir(parents=True)
    (creds / "pbx").mkdir()
    key, entry = new_api_key("telco", ["sessions:create", "sessions:resume"])
    (creds / "api-keys" / "keyring.json").write_text(json.dumps(Keyring(keys=[entry]).dump()))
    (creds / "pbx" / "api-key").write_text(key + "\n")
    return creds


async def test_new_calls_are_admitted_with_the_configured_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    creds = _credentials(tmp_path)
    pod = await start_pod(
        redis_server,
        tmp_path,
        "asock-auth",
        credentials_dir=creds,
        auth=AUTH,
        audio_socket={"credentialSecretRef": {"name": "pbx", "key": "api-key"}},
    )
    try:
        async with pbx(pod) as phone:
            live = await admitted(pod, phone)
            phone.dtmf("1#")
            await phone.quiet_answer(since=0)
            assert live.session.turn_records[-1].played_text == "You said: DTMF 1."
    finally:
        await pod.stop()


async def test_without_a_key_a_secured_fleet_refuses_new_calls(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    pod = await start_pod(
        redis_server, tmp_path, "asock-nokey", credentials_dir=_credentials(tmp_path), auth=AUTH
    )
    try:
        phone = await pbx(pod).connect()
        await phone.wait(lambda: phone.closed.is_set(), 10, "the refusal")
        assert phone.error_codes == [wire.ErrorCode.REFUSED] and phone.hung_up
        assert pod.hub is not None and pod.hub.live_sessions == 0
    finally:
        await pod.stop()
