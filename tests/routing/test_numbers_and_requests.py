"""Numbers and SIP URIs (the CallRequest built from them: tests/kamailio/test_requests.py)."""

from __future__ import annotations

import pytest

from routing.numbers import SipUriError, bare_uri, match_digits, parse_uri


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("+33 6 12-34.56/78", "33612345678"),
        ("(0044) 20 7946", "0044207946"),
        ("2001", "2001"),
        ("alice", None),
        ("+", None),
        ("*98", None),
    ],
)
def test_match_digits(text, digits):
    assert match_digits(text) == digits


@pytest.mark.parametrize(
    ("uri", "scheme", "user", "host", "port"),
    [
        ("sip:+33123@pbx.example", "sip", "+33123", "pbx.example", None),
        ("sips:bob@[2001:db8::1]:5061;transport=tls", "sips", "bob", "[2001:db8::1]", 5061),
        ('"Alice" <sip:%2B4477@gw.example;user=phone>;tag=9', "sip", "+4477", "gw.example", None),
        ("sip:+331234;npdi;rn=+3399@h.example", "sip", "+331234", "h.example", None),
        ("tel:+33123456789;phone-context=example", "tel", "+33123456789", "", None),
        ("SIP:alice@Example.COM:5070", "sip", "alice", "Example.COM", 5070),
        ("sip:h.example", "sip", "", "h.example", None),
    ],
)
def test_parse_uri(uri, scheme, user, host, port):
    parsed = parse_uri(uri)
    assert (parsed.scheme, parsed.user, parsed.host, parsed.port) == (scheme, user, host, port)


@pytest.mark.parametrize("uri", ["http://x", "alice@example", "sip:", "sip:a@h:99999", "<sip:a@h"])
def test_parse_uri_refuses_what_is_not_a_sip_uri(uri):
    with pytest.raises(SipUriError):
        parse_uri(uri)


def test_bare_uri_drops_display_name_and_header_parameters():
    assert bare_uri('"Al" <sip:a@b;user=phone>;tag=1') == "sip:a@b;user=phone"
    assert bare_uri("sip:a@b;tag=1") == "sip:a@b"
