from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.networks import (
    NetworkError,
    NetworkIndex,
    containing_networks,
    parse_address,
    parse_network,
)


def test_containing_networks_lists_every_enclosing_network_most_specific_first():
    networks = containing_networks(ipaddress.ip_address("192.0.2.77"))
    assert networks[0] == "192.0.2.77/32"
    assert "192.0.2.0/24" in networks
    assert networks[-1] == "128.0.0.0/1"
    assert len(networks) == 32
    assert all(ipaddress.ip_address("192.0.2.77") in ipaddress.ip_network(n) for n in networks)


def test_containing_networks_of_ipv6():
    networks = containing_networks(ipaddress.ip_address("2001:db8::1"))
    assert (networks[0], networks[-1], len(networks)) == ("2001:db8::1/128", "::/1", 128)
    assert "2001:db8::/32" in networks


@pytest.mark.parametrize(
    ("text", "expected"),
    [("192.0.2.1", "192.0.2.1"), ("[2001:db8::1]", "2001:db8::1"), ("::ffff:10.0.0.1", "10.0.0.1")],
)
def test_parse_address(text, expected):
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", ["", "x", "1.2.3", "192.0.2.1:5060"])
def test_parse_address_refuses_non_addresses(text):
    with pytest.raises(NetworkError):
        parse_address(text)


def test_parse_network_refuses_empty_input():
    with pytest.raises(NetworkError, match="Enter a network"):
        parse_network("  ")


def _reference(address) -> list[str]:
    bits = address.max_prefixlen
    return [str(ipaddress.ip_network((address, n), strict=False)) for n in range(bits, 0, -1)]


@given(st.ip_addresses())
def test_containing_networks_spells_networks_exactly_as_ipaddress_does(address):
    assert containing_networks(address) == _reference(address)


@pytest.mark.parametrize(
    "text", ["::", "::1", "::2:3", "::ffff:0:1", "::ffff:1.2.3.4", "ffff::", "fe80::1:0:0:1"]
)
def test_containing_networks_of_awkward_ipv6_spellings(text):
    address = ipaddress.ip_address(text)
    assert containing_networks(address) == _reference(address)


@given(
    st.lists(st.tuples(st.ip_addresses(), st.integers(min_value=1, max_value=128)), max_size=12),
    st.ip_addresses(),
)
def test_network_index_finds_what_the_candidate_list_finds(specs, address):
    networks = {
        str(ipaddress.ip_network((ip, min(length, ip.max_prefixlen)), strict=False))
        for ip, length in specs
    }
    index = NetworkIndex((network, n) for n, network in enumerate(sorted(networks)))
    expected = next((n for n in containing_networks(address) if n in networks), None)
    found = index.lookup(address)
    assert (found[0] if found else None) == expected


def test_network_index_prefers_the_most_specific_network():
    index = NetworkIndex([("10.0.0.0/8", "wide"), ("10.1.0.0/16", "narrow"), ("::/1", "v6")])
    assert index.lookup(ipaddress.ip_address("10.1.2.3")) == ("10.1.0.0/16", "narrow")
    assert index.lookup(ipaddress.ip_address("10.2.0.1")) == ("10.0.0.0/8", "wide")
    assert index.lookup(ipaddress.ip_address("11.0.0.1")) is None
    assert index.lookup(ipaddress.ip_address("::1")) == ("::/1", "v6")
