"""Host candidates confined to an address and a UDP port range, on a real aiortc pair over loopback."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from agent_pod.transports.ice import IcePolicy, PortAllocator, candidate_ports, confine
from tests.support.net import free_range


def test_allocator_spreads_and_reports_exhaustion():
    low, high = free_range(2, udp=True)
    allocator = PortAllocator(low, high)
    first = allocator.bind("127.0.0.1")
    second = allocator.bind("127.0.0.1")
    try:
        assert {first.getsockname()[1], second.getsockname()[1]} == {low, high}
        with pytest.raises(OSError, match="no free UDP port"):
            allocator.bind("127.0.0.1")
    finally:
        first.close()
        second.close()


async def test_peer_connection_uses_only_the_configured_ports():
    offer_range, answer_range = free_range(3, udp=True), free_range(3, udp=True)
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    try:
        channel = offerer.createDataChannel("events")
        confine(
            offerer,
            IcePolicy(addresses=["127.0.0.1"], port_min=offer_range[0], port_max=offer_range[1]),
            PortAllocator(*offer_range),
        )
        await offerer.setLocalDescription(await offerer.createOffer())
        offer_ports = candidate_ports(offerer.localDescription.sdp)

        @answerer.on("datachannel")
        def on_channel(remote):
            @remote.on("message")
            def on_message(message):
                if not received.done():
                    received.set_result(message)

        await answerer.setRemoteDescription(offerer.localDescription)
        confine(
            answerer,
            IcePolicy(addresses=["127.0.0.1"], port_min=answer_range[0], port_max=answer_range[1]),
            PortAllocator(*answer_range),
        )
        await answerer.setLocalDescription(await answerer.createAnswer())
        answer_ports = candidate_ports(answerer.localDescription.sdp)
        await offerer.setRemoteDescription(answerer.localDescription)

        opened = asyncio.Event()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 20)
        channel.send("over the confined ports")
        assert await asyncio.wait_for(received, 10) == "over the confined ports"

        assert offer_ports and all(offer_range[0] <= p <= offer_range[1] for p in offer_ports)
        assert answer_ports and all(answer_range[0] <= p <= answer_range[1] for p in answer_ports)
        for sdp in (offerer.localDescription.sdp, answerer.localDescription.sdp):
            hosts = {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}
            assert hosts == {"127.0.0.1"}  # no other interface is offered
        assert answerer.sctp is not None
        pair = answerer.sctp.transport.transport._connection._nominated[1]
        assert answer_range[0] <= pair.local_addr[1] <= answer_range[1]
    finally:
        await offerer.close()
        await answerer.close()
