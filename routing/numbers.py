"""Dialled numbers and SIP URIs: the text Kamailio sends, made usable for matching.

Pure functions. A dialled number keeps its leading '+' (a carrier must receive
what was dialled, not a mangled version), while matching uses the digits only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

# Visual separators people and PBXs put in numbers: "+33 (0)1 23-45.67/89".
_SEPARATORS = str.maketrans("", "", " \t-.()/")
_DIALLED = re.compile(r"^\+?[0-9]+$")
# Characters of a SIP URI user part (RFC 3261 unreserved, escaped and user-unreserved).
# Anything else (quotes, angle brackets, line breaks) could break a header we build.
_SAFE_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%#]*$")


def clean_number(text: str) -> str:
    """The number without visual separators; a leading '+' is kept."""
    return (text or "").strip().translate(_SEPARATORS)


def match_digits(text: str) -> str | None:
    """The digits used for prefix matching, or None when `text` is not a phone number."""
    cleaned = clean_number(text)
    if not _DIALLED.match(cleaned):
        return None
    return cleaned.lstrip("+")


def prefixes_of(digits: str) -> list[str]:
    """Every prefix a number can match, longest first, down to "" (the default route).

    The one longest-prefix rule: the resolver, the admin's number box and the prefix
    list's number search ask for these (an indexed `prefix IN (...)`), so a lookup
    costs the same whatever the size of the table.
    """
    return [digits[:n] for n in range(len(digits), -1, -1)]


def is_safe_user(text: str) -> bool:
    """Whether `text` can be placed in a SIP URI user part or header as it is."""
    return bool(_SAFE_USER.match(text or ""))


class SipUriError(ValueError):
    """A value that is not a usable SIP, SIPS or tel URI."""


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None


_URI = re.compile(
    r"""^(?P<scheme>sips?|tel):
        (?:(?P<user>[^@<>\s]*)@)?
        (?P<host>\[[0-9A-Fa-f:.]+\]|[^:;?>]*)
        (?::(?P<port>\d{1,5}))?
        (?P<rest>[;?].*)?$""",
    re.IGNORECASE | re.VERBOSE,
)


def bare_uri(value: str) -> str:
    """The URI of a header value: inside <...> when present, else up to the header params.

    '"Alice" <sip:a@b;user=phone>;tag=1' gives 'sip:a@b;user=phone'; 'sip:a@b;tag=1'
    gives 'sip:a@b' (without brackets, RFC 3261 gives the parameters to the header).
    """
    text = (value or "").strip()
    if "<" in text and ">" in text:
        return text[text.find("<") + 1 : text.find(">")].strip()
    return text.split(";", 1)[0].strip()


def parse_uri(value: str) -> SipUri:
    """Parse a SIP/SIPS/tel URI, also inside a name-addr ("Alice" <sip:...>;tag=..).

    The user part is unescaped (%2B → +) and loses its own parameters
    (sip:+331234;npdi@host has user +331234). For tel: URIs the number is the user.
    """
    text = (value or "").strip()
    if "<" in text:
        start, end = text.find("<"), text.find(">")
        if end < start:
            raise SipUriError(f"{value!r} has an unclosed '<'.")
        text = text[start + 1 : end].strip()
    match = _URI.match(text)
    if not match:
        raise SipUriError(f"{value!r} is not a sip:, sips: or tel: URI.")
    scheme = match["scheme"].lower()
    if scheme == "tel":
        number = text[4:].split(";", 1)[0]
        return SipUri(scheme=scheme, user=unquote(number), host="", port=None)
    host = match["host"]
    if not host:
        raise SipUriError(f"{value!r} has no host.")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise SipUriError(f"{value!r} has an invalid port.")
    user = unquote((match["user"] or "").split(";", 1)[0])
    return SipUri(scheme=scheme, user=user, host=host, port=port)
