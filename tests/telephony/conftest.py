from __future__ import annotations

from pathlib import Path

import pytest

from agent_pod.telephony import mulaw
from tests.support.audio import espeak_utterance
from tests.support.pod import pod_factory  # noqa: F401 (fixture)


@pytest.fixture(scope="session")
def ulaw_fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """espeak-ng phrases as mu-law 8 kHz, made once per test run and cached under pytest's tmp dir."""
    folder: Path = tmp_path_factory.mktemp("ulaw")
    out: dict[str, bytes] = {}
    for name, text in {
        "hello": "hello there",
        "story": "please tell me a story",
        "stop": "stop stop",
    }.items():
        path = folder / f"{name}.ulaw"
        if not path.exists():
            path.write_bytes(mulaw.encode(espeak_utterance(text, rate=8000)))
        out[name] = path.read_bytes()
    return out
