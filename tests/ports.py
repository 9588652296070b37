"""Ports for the servers the tests start.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from the ephemeral range, the
range every outgoing connection's local port is taken from too. Between the moment a test picks
such a port and the moment its server listens on it, any client on the machine (runbom's
exporters, an agent's SDK, a benchmark) may get it as its local port, and the server then fails
with "Address already in use". So a port is picked at random below the ephemeral range, checked
free, and never handed out twice in one run.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Below this, the fixed ports the examples declare (18080–18443) and well-known services.
LOWEST = 20000
_given: set[int] = set()


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on or is connected from, outside the ephemeral range,
    not handed out before in this process."""
    end = ephemeral_start()
    if end - LOWEST < 1000:
        raise RuntimeError(f"the ephemeral range starts at {end}: no room below it above {LOWEST}"
                           " (/proc/sys/net/ipv4/ip_local_port_range)")
    for _ in range(1000):
        port = random.randrange(LOWEST, end)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port between {LOWEST} and {end} after 1000 tries")
