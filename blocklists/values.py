"""What a blocklist entry's value may be, checked the same way by the models, the
services and the importer (pure functions, no database).

A caller or callee list holds numbers: digits only (a leading '+' is accepted and
dropped, as the resolver matches on digits), at most MAX_DIGITS, matched `exact` (the
whole number) or as a `prefix`. A source list holds networks (CIDR; a bare address is
one host), matched by the most specific network containing the call's source address.
"""

from __future__ import annotations

from tenants.networks import NetworkError, parse_network

MAX_DIGITS = 18  # int("1" + digits) of 18 digits fits the compiled store's 64-bit keys
MAX_VALUE = 43  # the longest normalised network text: an IPv6 address and "/128"

CALLER, CALLEE, SOURCE = "caller", "callee", "source"
EXACT, PREFIX, NETWORK = "exact", "prefix", "network"


class BadValue(ValueError):
    """A value that cannot be an entry of the list, with the reason for an operator."""


def number_value(text: str) -> str:
    """The digits of a number or prefix entry, or raise BadValue."""
    value = (text or "").strip()
    digits = value[1:] if value.startswith("+") else value
    if not digits:
        raise BadValue("empty: write the digits of a number or prefix")
    if not (digits.isascii() and digits.isdigit()):
        raise BadValue(f"{value!r} is not digits (a leading + is allowed)")
    if len(digits) > MAX_DIGITS:
        raise BadValue(f"{value!r} is too long: at most {MAX_DIGITS} digits")
    return digits


def network_value(text: str) -> str:
    """The normalised network of a source entry, or raise BadValue."""
    try:
        return parse_network(text)
    except NetworkError as exc:
        raise BadValue(f"bad CIDR: {exc}") from None


def entry_value(kind: str, text: str, match: str) -> tuple[str, str]:
    """(value, match) as stored for a list of `kind`, or raise BadValue."""
    if kind == SOURCE:  # a network is matched as a network, whatever `match` says
        return network_value(text), NETWORK
    if match not in ("", EXACT, PREFIX):
        raise BadValue(f"match is 'exact' or 'prefix', not {match!r}")
    return number_value(text), match or EXACT
