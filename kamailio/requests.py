"""Build a CallRequest from the fields Kamailio sends, the same way for every transport.

The callee is the explicit `callee`, else the R-URI user, else the To-URI user;
the caller is the explicit `caller`, else the From-URI user; all percent-decoded. Both the HTTP view
and the EVAPI bridge call this, so the same call gets the same answer either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from routing.numbers import SipUriError, bare_uri, parse_uri
from routing.resolver import CallRequest


class CallFieldsError(ValueError):
    """Fields that do not describe a routable call; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CallFieldsError({name: "must be a string"})
    return value.strip()


def _uri_user(fields: Mapping[str, Any], name: str, errors: dict[str, str]) -> str:
    value = _text(fields, name)
    if not value:
        return ""
    try:
        return parse_uri(value).user
    except SipUriError as exc:
        errors[name] = str(exc)
        return ""


def call_request_from_fields(
    fields: Mapping[str, Any], *, tenant: str | None = None
) -> CallRequest:
    """A CallRequest from Kamailio's fields, or CallFieldsError saying which field is wrong."""
    errors: dict[str, str] = {}
    ruri_user = _uri_user(fields, "ruri", errors)
    to_user = _uri_user(fields, "to_uri", errors)
    from_user = _uri_user(fields, "from_uri", errors)
    # Explicit values come from $rU / $fU, which Kamailio leaves escaped (%2B33...);
    # decode them as parse_uri() decodes URI users, so both paths give one number.
    callee = unquote(_text(fields, "callee")) or ruri_user or to_user
    caller = unquote(_text(fields, "caller")) or from_user
    if not callee and "callee" not in errors:
        errors["callee"] = "no callee: send callee, ruri or to_uri with a user part"
    port = fields.get("source_port")
    if port in (None, ""):
        port = None
    elif isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdigit():
        errors["source_port"] = "must be a port number"
        port = None
    elif not 0 < int(port) < 65536:
        errors["source_port"] = "must be between 1 and 65535"
        port = None
    if errors:
        raise CallFieldsError(errors)
    return CallRequest(
        callee=callee,
        caller=caller,
        source_ip=_text(fields, "source_ip") or None,
        tenant=tenant,
        source_port=int(port) if port is not None else None,
        call_id=_text(fields, "call_id"),
        from_name=_text(fields, "from_name"),
        from_uri=bare_uri(_text(fields, "from_uri")),
        from_tag=_text(fields, "from_tag"),
        to_name=_text(fields, "to_name"),
        to_uri=bare_uri(_text(fields, "to_uri")),
        to_tag=_text(fields, "to_tag"),
        ruri=_text(fields, "ruri"),
        account=_text(fields, "account"),
    )
