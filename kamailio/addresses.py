"""HOST:PORT as the transports' commands take it (--connect, --bind)."""

from __future__ import annotations


def parse_host_port(text: str, *, example: str) -> tuple[str, int]:
    """'host:port' or '[ipv6]:port' -> (host, port), or ValueError saying what is wrong."""
    value = text.strip()
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address as [ADDRESS]:PORT")
    if not sep or not host or any(c.isspace() for c in host):
        raise ValueError(f"expected HOST:PORT, e.g. {example}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)
