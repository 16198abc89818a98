from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.networks import NetworkError, containing_networks, parse_address, parse_network


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
