"""ICE host candidates on chosen addresses and a UDP port range.

aiortc (through aioice 0.13) binds every host candidate on an OS-chosen port of
every interface but loopback, with no option to limit either. A pod must offer
media on its own address and inside the UDP range its Service and firewall
open, so we replace host-candidate gathering on the peer connection's own ICE
connections (nothing global is patched): one socket per configured address,
bound to the first free port of the range, round-robin from where the last
bind stopped. With ``iceServers=[]`` there are no server-reflexive or relayed
candidates to gather, so the host candidates are the whole set.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

from aioice import Candidate, Connection
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol
from aiortc import RTCPeerConnection
from pydantic import BaseModel, Field, model_validator


class IcePolicy(BaseModel):
    """Where host candidates are bound."""

    addresses: list[str] = Field(min_length=1, description="Local IP addresses offered as host candidates.")
    port_min: int = Field(
        default=0, ge=0, le=65535, description="First UDP port; 0 with port_max 0: any port."
    )
    port_max: int = Field(default=0, ge=0, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> IcePolicy:
        if self.port_min > self.port_max:
            raise ValueError("port_min must be <= port_max")
        return self


def ports_from(port_min: int, port_max: int, start: int) -> Iterator[int]:
    """Every port of [port_min, port_max] once, beginning at ``start`` and wrapping around."""
    if not port_min <= start <= port_max:
        start = port_min
    yield from range(start, port_max + 1)
    yield from range(port_min, start)


class PortsExhausted(OSError):
    """Every UDP port of the media range is taken on this pod."""


class PortAllocator:
    """Binds UDP sockets in a port range, round-robin so a busy range is not rescanned from its start."""

    def __init__(self, port_min: int, port_max: int) -> None:
        self.port_min = port_min
        self.port_max = port_max
        self._next = port_min

    def bind(self, address: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if self.port_max == 0:
            return _bound(family, address, 0)
        for port in ports_from(self.port_min, self.port_max, self._next):
            try:
                sock = _bound(family, address, port)
            except OSError:
                continue
            self._next = port + 1 if port < self.port_max else self.port_min
            return sock
        raise PortsExhausted(f"no free UDP port in {self.port_min}-{self.port_max} on {address}")


def _bound(family: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def confine(pc: RTCPeerConnection, policy: IcePolicy, allocator: PortAllocator) -> None:
    """Make every ICE connection of ``pc`` gather only on the policy's addresses and ports.

    Call after the transceivers and data channel exist (setRemoteDescription for an answerer,
    addTransceiver/createDataChannel for an offerer) and before setLocalDescription gathers."""
    gatherers = [t.sender.transport.transport.iceGatherer for t in pc.getTransceivers()]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    for gatherer in gatherers:
        _confine_connection(gatherer._connection, policy, allocator)


def _confine_connection(connection: Connection, policy: IcePolicy, allocator: PortAllocator) -> None:
    # Same signature as aioice's method; the addresses it found are replaced by the policy's.
    async def host_candidates(component: int, addresses: list[str], timeout: int = 5) -> list[Candidate]:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        candidates = []
        for address in policy.addresses:
            sock = allocator.bind(address)
            _, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(connection), sock=sock)
            host, port = sock.getsockname()[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            connection._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates

    connection.get_component_candidates = host_candidates  # type: ignore[method-assign]


def candidate_ports(sdp: str) -> list[int]:
    """UDP ports of the host candidates in an SDP (used to check the range in tests and logs)."""
    ports = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) > 5 and fields[2].lower() == "udp":
                ports.append(int(fields[5]))
    return ports
