"""Validators for the values operators type into route tables.

Each raises a ValidationError whose message says what is wrong in an operator's
words. They are plain functions so the admin, the API and the CSV importer share
them through the models' fields and `clean()`.
"""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

from routing.translation import RuleError, caller_pattern, validate_rules

# RFC 1123 host names (labels of letters, digits and hyphens).
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*\.?$"
)
# RFC 3261 token, the legal characters of a header name.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# A SIP or SIPS URI for an outbound proxy: scheme, optional user, host, port, params.
_SIP_URI = re.compile(
    r"^sips?:(?:[^@\s<>\"]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::\d{1,5})?(?:;[^\s<>\"]*)?$"
)
# Kamailio's socket notation: proto:host:port (host may be an IPv6 address in brackets).
_SOCKET = re.compile(r"^(udp|tcp|tls|sctp):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
# Placeholders an operator may use in caller-ID rewrites and extra headers.
PLACEHOLDERS = ("caller", "callee")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# Headers the proxy builds itself; setting them as "extra" headers breaks the dialog.
RESERVED_HEADERS = {
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "content-length",
    "l",
    "max-forwards",
    "contact",
    "m",
    "route",
    "record-route",
}


def validate_host(value: str) -> None:
    """A host name, an IPv4 address or an IPv6 address (without brackets or port)."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    if ":" in text:
        raise ValidationError(
            "%(value)s is not a host: give the port in the port field, and an IPv6 "
            "address without brackets.",
            params={"value": value},
            code="invalid_host",
        )
    if not _HOSTNAME.match(text) or text.replace(".", "").isdigit():
        raise ValidationError(
            "%(value)s is not a valid host name or IP address.",
            params={"value": value},
            code="invalid_host",
        )


def validate_digits(value: str) -> None:
    """Digits only: prefixes are matched on the dialled number without + or separators."""
    # str.isdigit() also accepts other scripts' digits (Arabic-Indic '٣'), which no
    # dialled number matches: only 0-9.
    if value and not (value.isascii() and value.isdigit()):
        raise ValidationError(
            "Use digits only (%(value)s): write E.164 prefixes without '+', spaces or dashes, "
            "e.g. 3361 for +33 6 1…",
            params={"value": value},
            code="invalid_digits",
        )


_FAILOVER_TOKEN = re.compile(r"^(?:[3-6][0-9][0-9]|[3-6]xx)$")


def failover_tokens(value: str) -> list[str]:
    """'5xx, 408 486' -> ['5xx', '408', '486']."""
    return [token for token in re.split(r"[\s,]+", value.strip().lower()) if token]


def validate_failover_codes(value: str) -> None:
    """SIP codes (300-699) or classes (5xx) that move a call to the next trunk."""
    bad = [token for token in failover_tokens(value) if not _FAILOVER_TOKEN.match(token)]
    if bad:
        raise ValidationError(
            "%(bad)s: write SIP codes from 300 to 699 or classes such as 5xx, separated by "
            "commas, e.g. 5xx, 408, 486.",
            code="invalid_failover_codes",
            params={"bad": ", ".join(bad)},
        )


def validate_tech_prefix(value: str) -> None:
    """Digits, '*' and '#': what carriers use to identify a customer or a route class."""
    if value and not re.fullmatch(r"[0-9*#]+", value):
        raise ValidationError(
            "A tech prefix contains digits, '*' and '#' only.", code="invalid_tech_prefix"
        )


def validate_sip_uri(value: str) -> None:
    """A sip: or sips: URI such as sip:proxy.example.net:5060;transport=tcp."""
    if not _SIP_URI.match(value.strip()):
        raise ValidationError(
            "%(value)s is not a SIP URI; write it like sip:proxy.example.net:5060.",
            params={"value": value},
            code="invalid_sip_uri",
        )


def validate_from_uri(value: str) -> None:
    """A sip: or sips: URI for the From header, e.g. sip:{caller}@trunk.example.net.

    {caller} and {callee} stand for numbers, so they fit where a number does (the
    user part, parameters) and the rest is checked like an outbound proxy's URI.
    Unknown placeholders are left to validate_placeholders(), which names them.
    """
    text = value
    for name in PLACEHOLDERS:
        text = text.replace(f"{{{name}}}", "+1")
    scheme, colon, rest = text.partition(":")
    if "<" in text or ">" in text:
        problem = "write the URI alone, without < > (the display name has its own field)"
    elif not colon or scheme not in ("sip", "sips"):
        problem = "it must start with sip: or sips:"
    elif not rest.rpartition("@")[2]:
        problem = "it has no host (a domain or an address)"
    elif not _SIP_URI.match(text):
        problem = "check it for spaces, and its host and port"
    else:
        return
    raise ValidationError(
        "%(value)s is not a valid From URI: %(problem)s; write it like "
        "sip:{caller}@trunk.example.net.",
        params={"value": value, "problem": problem},
        code="invalid_from_uri",
    )


def validate_socket(value: str) -> None:
    """Kamailio's local socket notation, proto:address:port."""
    match = _SOCKET.match(value.strip())
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ValidationError(
            "%(value)s is not a Kamailio socket; write it like udp:192.0.2.10:5060.",
            params={"value": value},
            code="invalid_socket",
        )


def validate_no_line_breaks(value: str) -> None:
    """A value that ends up inside a SIP header must stay on one line."""
    if "\r" in value or "\n" in value:
        raise ValidationError("Line breaks are not allowed here.", code="line_break")


def validate_placeholders(value: str) -> None:
    """Only {caller} and {callee} may appear between braces."""
    for name in _PLACEHOLDER.findall(value):
        if name not in PLACEHOLDERS:
            raise ValidationError(
                "Unknown placeholder {%(name)s}; use {caller} or {callee}.",
                params={"name": name},
                code="unknown_placeholder",
            )


def parse_header_lines(value: str) -> list[tuple[str, str]]:
    """Split extra headers ("Name: value" per line) into pairs, or raise ValidationError.

    The error names the line that is wrong, so an operator can fix a long block.
    """
    headers: list[tuple[str, str]] = []
    for number, raw in enumerate(value.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, sep, content = line.partition(":")
        name, content = name.strip(), content.strip()
        if not sep or not name or not _HEADER_NAME.match(name):
            raise ValidationError(
                "Line %(line)s (%(text)s) is not a header: write one 'Name: value' per line.",
                params={"line": number, "text": line},
                code="invalid_header",
            )
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(
                "Line %(line)s sets %(name)s, which Kamailio manages itself; use the "
                "caller-ID fields to rewrite From.",
                params={"line": number, "name": name},
                code="reserved_header",
            )
        if not content:
            raise ValidationError(
                "Line %(line)s (%(name)s) has no value.",
                params={"line": number, "name": name},
                code="invalid_header",
            )
        validate_placeholders(content)
        headers.append((name, content))
    return headers


def validate_header_lines(value: str) -> None:
    parse_header_lines(value)


def validate_country_code(value: str) -> None:
    """An E.164 country code: 1 to 3 digits, not starting with 0 (33, 44, 1, 358)."""
    if value and not re.fullmatch(r"[1-9][0-9]{0,2}", value):
        raise ValidationError(
            "A country code is 1 to 3 digits without '+' or a leading 0, e.g. 33 or 1.",
            code="invalid_country_code",
        )


def validate_dialling_prefix(value: str) -> None:
    """A national or international dialling prefix: digits, e.g. 0, 00, 011."""
    if value and not re.fullmatch(r"[0-9]{1,4}", value):
        raise ValidationError(
            "A dialling prefix is 1 to 4 digits, e.g. 0 (national) or 00 (international).",
            code="invalid_dialling_prefix",
        )


def validate_translation_rules(value: str) -> None:
    """Number translation rules (routing.translation): each names itself when refused."""
    try:
        validate_rules(value)
    except RuleError as exc:
        raise ValidationError(str(exc), code="invalid_rules") from None


def validate_caller_pattern(value: str) -> None:
    """A route's caller pattern: RE2 (no back-references or look-around), one line, at
    most 200 characters (routing.translation.caller_pattern)."""
    if not value:
        return
    try:
        caller_pattern(value)
    except RuleError as exc:
        raise ValidationError(str(exc), code="invalid_caller_pattern") from None
