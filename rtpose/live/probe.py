"""What answers at a ``tcp://`` address that did not behave as a ZeroMQ publisher.

A plain TCP connection sends one HTTP request line (RFC 9112, section 3) and reads the
first bytes of the answer. A web server (an ``rtpose view`` page port, ``python -m
http.server``) answers ``HTTP/1.x ...``; a ZeroMQ peer answers its 10-byte greeting
signature (``0xFF ... 0x7F``, ZMTP 3.x, rfc.zeromq.org/spec/23); other programs answer
something else or nothing. Used once by the view's ``StreamWatcher`` when a connection
stays up without a ZeroMQ handshake, or when the first messages are not rtpose's, and by
``rtpose listen`` when nothing has arrived.
"""

from __future__ import annotations

import socket
import time

HTTP = "http"
OTHER = "other"  # answered, not like HTTP (a ZeroMQ peer, another protocol)
SILENT = "silent"  # accepted the connection, said nothing in time, or hung up
UNREACHABLE = "unreachable"  # the probe's own connection failed


def tcp_parts(address: str) -> tuple[str, str] | None:
    """(host, port text) of a ZeroMQ ``tcp://[source;]host:port`` address, as written (the
    port may be ``*`` or not a number); None for another transport or no port."""
    if not address.startswith("tcp://"):
        return None
    rest = address[len("tcp://"):].rsplit(";", 1)[-1]
    host, colon, port = rest.rpartition(":")
    return (host.strip("[]"), port) if colon else None


def tcp_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ZeroMQ ``tcp://[source;]host:port`` address to connect to, or None
    for another transport, a wildcard host or a port that is not a number."""
    parts = tcp_parts(address)
    if parts is None or not parts[0] or parts[0] == "*" or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def probe(address: str, timeout_s: float = 2.0) -> str | None:
    """Send an HTTP request line to ``address`` and classify what comes back.

    Args:
        address: a ZeroMQ address, e.g. ``tcp://127.0.0.1:8050``.
        timeout_s: for connecting, and for the first bytes of the answer (seconds).

    Returns:
        ``HTTP``, ``OTHER``, ``SILENT`` or ``UNREACHABLE``; None when ``address`` is not
        a ``tcp://`` address with a host and a port (nothing was probed). Never raises.
    """
    target = tcp_host_port(address)
    if target is None:
        return None
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii", "replace"))
            answer = b""
            deadline = time.monotonic() + timeout_s
            while len(answer) < 5:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                connection.settimeout(left)
                try:
                    chunk = connection.recv(64)
                except (TimeoutError, socket.timeout, ConnectionResetError):
                    break
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return UNREACHABLE
    if answer.startswith(b"HTTP/"):
        return HTTP
    return OTHER if answer else SILENT
