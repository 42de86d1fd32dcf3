"""Free loopback ports for test servers.

Ports come from below the kernel's ephemeral range: a port the kernel hands out for ``bind(0)`` can be
taken again by any outgoing connection between the check and the server's own bind (CI lost a run to
that). Ports handed out once in this process are never handed out again.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_LOW = 10000
_HIGH = max(_LOW + 1000, _ephemeral_low()) - 1


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
    for _ in range(1000):
        base = random.randint(_LOW, _HIGH - size + 1)
        ports = range(base, base + size)
        if any(p in _given for p in ports):
            continue
        if all(_bindable(p, host, kind) for p in ports):
            _given.update(ports)
            return base, base + size - 1
    raise RuntimeError(f"no {size} free ports between {_LOW} and {_HIGH}")
