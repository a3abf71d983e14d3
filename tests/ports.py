"""Loopback ports for the servers that tests start themselves."""

from __future__ import annotations

import socket
from collections.abc import Sequence


def free_port(ports: Sequence[int]) -> int:
    """Return the first port of `ports` that nothing listens on at 127.0.0.1."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(
        f"no free port in {ports[0]}-{ports[-1]} on 127.0.0.1; stop the servers "
        "that hold them"
    )
