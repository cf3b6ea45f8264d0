"""Network reachability probes shared by the local stack and the retraining flow."""

from __future__ import annotations

import socket


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Example:
        >>> port_open("127.0.0.1", 1, timeout=0.1)
        False
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
