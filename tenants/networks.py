"""Parsing and matching of source networks (CIDR, IPv4 and IPv6).

Pure functions: no Django, no database. Networks are stored in their normalised
text form ("10.0.0.0/8", "2001:db8::/32"), so "which networks contain this IP" is
one indexed `IN (...)` query over the at most 33 (IPv4) or 129 (IPv6) networks
that can contain an address, whatever the size of the table.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkError(ValueError):
    """A network or address that cannot be used, with a message for an operator."""


def parse_network(value: str) -> str:
    """Return the normalised CIDR text of `value`, or raise NetworkError.

    A bare address means a single host (/32 or /128). Host bits must be clear, so
    a typo such as 10.0.0.1/8 is caught instead of silently widened.
    """
    text = (value or "").strip()
    if not text:
        raise NetworkError("Enter a network such as 192.0.2.0/24, 2001:db8::/48 or 192.0.2.10.")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise NetworkError(f"{text!r} is not an IPv4 or IPv6 network ({exc}).") from None
        raise NetworkError(f"{text!r} has host bits set; did you mean {loose}?") from None
    if network.prefixlen == 0:
        raise NetworkError(
            f"{network} matches every address; a source network must name real hosts."
        )
    return str(network)


def parse_address(value: str) -> IPAddress:
    """Return the IP address in `value` (IPv6 may be in brackets), or raise NetworkError."""
    text = (value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise NetworkError(f"{value!r} is not an IPv4 or IPv6 address.") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d.
        address = address.ipv4_mapped
    return address


def containing_networks(address: IPAddress) -> list[str]:
    """Every network that contains `address`, most specific first, as normalised text."""
    bits = address.max_prefixlen
    return [
        str(ipaddress.ip_network((address, length), strict=False)) for length in range(bits, 0, -1)
    ]


def prefix_length(network: str) -> int:
    """The prefix length of a normalised network text."""
    return int(network.rsplit("/", 1)[1])
