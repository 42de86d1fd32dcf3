"""A pod whose media port range is used up refuses an offer with 503 + Retry-After in the usual JSON
(attacker finding: it was a plain-text 500), starts no session, and takes offers again once ports free."""

from __future__ import annotations

import socket

import aiohttp

from tests.support.pod import PodFactory, loopback_offer, pod_ports, synthetic_config


async def test_an_exhausted_port_range_is_a_clear_503(pod_factory: PodFactory) -> None:
    ports = pod_ports(udp_size=4)
    pod = await pod_factory(synthetic_config(transport={"webrtc": {"enabled": True}}), ports=ports)
    taken = []
    for port in range(ports.udp_min, ports.udp_max + 1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        taken.append(sock)
    async with loopback_offer() as offer, aiohttp.ClientSession() as http:
        async with http.post(pod.http_url + "/v1/webrtc", json=offer) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            body = await r.json()
            assert body["error"]["code"] == "unavailable" and "UDP port" in body["error"]["message"]
        assert pod.hub is not None and pod.hub.live_sessions == 0
        for sock in taken:
            sock.close()
        async with http.post(pod.http_url + "/v1/webrtc", json=offer) as r:
            assert r.status == 201
