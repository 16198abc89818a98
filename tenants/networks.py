"""Parsing and matching of source networks (CIDR, IPv4 and IPv6).

Pure functions: no Django, no database. Networks are stored in their normalised
text form ("10.0.0.0/8", "2001:db8::/32"), so "which networks contain this IP" is
one indexed `IN (...)` query over the at most 33 (IPv4) or 129 (IPv6) networks
that can contain an address, whatever the size of the table.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import Generic, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
V = TypeVar("V")


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
    """Return the IP address in `value` (IPv6 may be in brackets), or raise NetworkError.

    Remembered: a Kamailio's calls come from a few thousand addresses at most, and
    ipaddress's parser was a tenth of a decision (addresses are immutable).
    """
    return _parsed_address(value or "")


@functools.lru_cache(maxsize=16384)
def _parsed_address(value: str) -> IPAddress:
    text = value.strip()
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
    """Every network that contains `address`, most specific first, as normalised text.

    This runs on every routing decision, so it masks integers and formats them
    directly (the same text as str(ipaddress.ip_network(...)), which a property
    test checks) instead of building 32 or 128 ip_network objects.
    """
    value = int(address)
    if address.version == 4:
        return [_ipv4_network(value, length) for length in range(32, 0, -1)]
    return [_ipv6_network(value, length) for length in range(128, 0, -1)]


def _ipv4_network(value: int, length: int) -> str:
    net = value & (_IPV4_ALL ^ (_IPV4_ALL >> length))
    return f"{net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.{net & 255}/{length}"


def _ipv6_network(value: int, length: int) -> str:
    net = value & (_IPV6_ALL ^ (_IPV6_ALL >> length))
    high = net >> 32
    if high == 0 or high == 0xFFFF:
        # inet_ntop writes these with an embedded dotted quad (::ffff:1.2.3.4);
        # ipaddress does not, and stored networks use ipaddress's spelling.
        text = str(ipaddress.IPv6Address(net))
    else:
        text = socket.inet_ntop(socket.AF_INET6, net.to_bytes(16, "big"))
    return f"{text}/{length}"


_IPV4_ALL = (1 << 32) - 1
_IPV6_ALL = (1 << 128) - 1


def prefix_length(network: str) -> int:
    """The prefix length of a normalised network text."""
    return int(network.rsplit("/", 1)[1])


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> tuple[int, int, int, int]:
    """(version, network as integer, mask, prefix length) of a normalised network text."""
    network = ipaddress.ip_network(text)
    bits = 32 if network.version == 4 else 128
    mask = ((1 << network.prefixlen) - 1) << (bits - network.prefixlen)
    return network.version, int(network.network_address), mask, network.prefixlen


def network_contains(network: str, address: IPAddress) -> int | None:
    """The prefix length of `network` if it contains `address`, else None (no parsing
    per call: a network's integers are computed once and remembered)."""
    version, base, mask, length = _parsed(network)
    if address.version != version or int(address) & mask != base:
        return None
    return length


class NetworkIndex(Generic[V]):
    """Most-specific-network lookup over a fixed set of networks, for in-memory tables.

    One dict per prefix length that occurs (usually a handful), keyed by the masked
    address as an integer: a lookup costs one mask and one dict probe per length
    present, not the 32 or 128 candidate networks the database lookup has to name.
    """

    def __init__(self, pairs: Iterable[tuple[str, V]]) -> None:
        by_length: dict[tuple[int, int], dict[int, tuple[str, V]]] = {}
        for text, value in pairs:
            network = ipaddress.ip_network(text)
            key = (network.version, network.prefixlen)
            by_length.setdefault(key, {})[int(network.network_address)] = (text, value)
        self._levels: dict[int, list[tuple[int, dict[int, tuple[str, V]]]]] = {4: [], 6: []}
        for (version, length), networks in sorted(by_length.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << length) - 1) << (bits - length)
            self._levels[version].append((mask, networks))

    def containing(self, address: IPAddress) -> list[tuple[str, V]]:
        """Every (network text, value) containing `address`, most specific first."""
        value = int(address)
        found = []
        for mask, networks in self._levels[address.version]:
            hit = networks.get(value & mask)
            if hit is not None:
                found.append(hit)
        return found

    def lookup(self, address: IPAddress) -> tuple[str, V] | None:
        """(network text, value) of the most specific network containing `address`."""
        value = int(address)
        for mask, networks in self._levels[address.version]:
            found = networks.get(value & mask)
            if found is not None:
                return found
        return None
