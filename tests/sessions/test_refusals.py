"""The one mapping of refusals to HTTP and gRPC, tested directly."""

from __future__ import annotations

import json

import grpc
import pytest

from agent_pod.sessions.directory import AdmissionError
from agent_pod.sessions.refusals import (
    STATUSES,
    grpc_trailers,
    http_refusal,
    retry_after_header,
    status_of,
)


@pytest.mark.parametrize(
    ("code", "http", "rpc"),
    [
        ("invalid_argument", 400, grpc.StatusCode.INVALID_ARGUMENT),
        ("unauthenticated", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("permission_denied", 403, grpc.StatusCode.PERMISSION_DENIED),
        ("not_found", 404, grpc.StatusCode.NOT_FOUND),
        ("request_timeout", 408, grpc.StatusCode.DEADLINE_EXCEEDED),
        ("wrong_pod", 409, grpc.StatusCode.FAILED_PRECONDITION),
        ("too_large", 413, grpc.StatusCode.INVALID_ARGUMENT),
        ("resource_exhausted", 429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("unavailable", 503, grpc.StatusCode.UNAVAILABLE),
        ("something_new", 500, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_code_has_one_status_on_both_protocols(code: str, http: int, rpc: grpc.StatusCode) -> None:
    assert status_of(code) == (http, rpc.name)
    assert grpc.StatusCode[status_of(code).grpc] is rpc


@pytest.mark.parametrize(
    ("seconds", "header"), [(None, None), (0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (29.5, "30")]
)
def test_retry_after_rounds_up_and_is_never_zero(seconds: float | None, header: str | None) -> None:
    assert retry_after_header(seconds) == header


def test_http_and_grpc_carry_the_same_code_message_and_retry_after() -> None:
    exc = AdmissionError("resource_exhausted", "tenant acme is over its quota", 2.4, grpc_address="p:1")
    response = http_refusal(exc)
    assert response.status == 429 and response.headers["Retry-After"] == "3"
    assert response.text is not None
    assert json.loads(response.text) == {
        "error": {
            "code": "resource_exhausted",
            "message": "tenant acme is over its quota",
            "retryAfterSeconds": 3,
        }
    }
    assert dict(grpc_trailers(exc)) == {"retry-after": "3", "voicefleet-grpc-address": "p:1"}


def test_every_code_the_session_layer_raises_is_mapped() -> None:
    """A code raised anywhere but missing from the table would surface as a 500."""
    import pathlib
    import re

    raised = set()
    for path in pathlib.Path("agent_pod").rglob("*.py"):
        text = path.read_text()
        raised |= set(re.findall(r'(?:AdmissionError|http_error)\(\s*"([a-z_]+)"', text))
    assert raised and raised <= set(STATUSES), raised - set(STATUSES)
