"""Free loopback ports for test servers.

Ports come from below the kernel's ephemeral range: a port the kernel hands out for ``bind(0)`` can be
taken again by any outgoing connection between the check and the server's own bind (CI lost a run to
that). Ports are handed out in order from a cursor per protocol, so single TCP ports never fragment the
room that UDP ranges need, and a port handed out once is not handed out again until the cursor has been
all the way round (then only a port that binds is reused).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: dict[socket.SocketKind, set[int]] = {socket.SOCK_STREAM: set(), socket.SOCK_DGRAM: set()}


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_LOW = 10000
_HIGH = max(_LOW + 1000, _ephemeral_low()) - 1
# Where each protocol's next search starts; random per process, so parallel test processes rarely meet.
_cursor = {kind: random.randrange(_HIGH - _LOW) for kind in _given}


def _bindable(port: int, host: str, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", udp: bool = False) -> int:
    """A TCP (or UDP) port on ``host`` that is free now and outside the ephemeral range."""
    return free_range(1, host, udp)[0]


def free_range(size: int, host: str = "127.0.0.1", udp: bool = False) -> tuple[int, int]:
    """``size`` consecutive free ports (first, last) outside the ephemeral range."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    given = _given[kind]
    for _ in range(2):
        bases = _HIGH - size + 2 - _LOW
        scanned = 0
        while scanned < bases:
            base = _LOW + (_cursor[kind] + scanned) % bases
            taken = next(
                (
                    p
                    for p in range(base + size - 1, base - 1, -1)
                    if p in given or not _bindable(p, host, kind)
                ),
                None,
            )
            if taken is None:
                given.update(range(base, base + size))
                _cursor[kind] = base + size - _LOW
                return base, base + size - 1
            scanned += taken - base + 1  # every window holding the taken port is skipped
        given.clear()  # all the way round: ports of servers long stopped may be reused if they bind
    raise RuntimeError(f"no {size} free ports between {_LOW} and {_HIGH}")
