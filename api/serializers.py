"""Serializers of the API: the wire contract of the routing endpoint, and the route table."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routing.resolver import Decision, PrefixRow, Route, to_rtjson
from tenants.networks import NetworkError, parse_address

# --- The routing request (the Wazo-shaped body Kamailio posts) -------------------------


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers, lists and objects are refused, not coerced."""

    default_error_messages = {
        "invalid": "Must be a string.",
        "surrogates": "Must be valid Unicode text (no lone surrogates).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("surrogates")
        return super().to_internal_value(data)


class SourceIPField(serializers.CharField):
    """An IPv4 or IPv6 address (brackets and IPv4-mapped IPv6 accepted), normalised."""

    default_error_messages = {"invalid": "Must be an IPv4 or IPv6 address."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return str(parse_address(super().to_internal_value(data)))
        except NetworkError:
            self.fail("invalid")


class CallRequestSerializer(serializers.Serializer):
    """The body Kamailio posts for a new call (the request shape of Wazo's router).

    Only the shape is checked here; which field gives the callee and caller is
    routing.requests.call_request_from_fields(), shared with the EVAPI bridge.
    """

    event = StrictCharField(max_length=64, help_text='Free text, e.g. "sip-routing".')
    source_ip = SourceIPField(
        help_text="Address the call came from ($si): it names the tenant by its source networks."
    )
    source_port = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=65535, help_text="$sp"
    )
    call_id = StrictCharField(
        max_length=512, help_text="$ci: seeds the weighted order of equal-priority trunks."
    )
    from_name = StrictCharField(max_length=256, help_text="$fn (display name)")
    from_uri = StrictCharField(max_length=1024, help_text="$fu")
    from_tag = StrictCharField(max_length=256, help_text="$ft")
    to_name = StrictCharField(max_length=256, help_text="$tn")
    to_uri = StrictCharField(max_length=1024, help_text="$tu")
    to_tag = StrictCharField(max_length=256, help_text="$tt (empty on a new call)")
    ruri = StrictCharField(max_length=1024, help_text="$ru: its user is the callee when given.")
    caller = StrictCharField(max_length=128, help_text="Overrides the From-URI user.")
    callee = StrictCharField(
        max_length=128, help_text="Overrides the R-URI and To-URI user as the dialled number."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Absent and null mean the same thing to the request builder.
        return {name: value for name, value in attrs.items() if value is not None}


class RoutingAnswerSerializer(serializers.Serializer):
    """For the schema only: `rtjson` is the document Kamailio's rtjson module reads."""

    rtjson = serializers.DictField(
        help_text="version, success, routing (serial|parallel|location), routes; or "
        "success false with the SIP code and reason to reply. Also decision_id, outcome, "
        "tenant and prefix for logs."
    )


# --- Simulation: the decision with its trace ------------------------------------------


def _prefix_json(row: PrefixRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "prefix": row.prefix,
        "action": row.action,
        "routing_mode": row.routing_mode,
        "min_length": row.min_length,
        "max_length": row.max_length,
        "description": row.description,
    }


def _route_json(route: Route) -> dict[str, Any]:
    return {
        "carrier": route.carrier,
        "trunk": route.trunk,
        "trunk_id": route.trunk_id,
        "priority": route.priority,
        "weight": route.weight,
        "uri": route.uri,
        "dst_uri": route.dst_uri,
        "path": route.path,
        "socket": route.socket,
        "from_display": route.from_display,
        "from_uri": route.from_uri,
        "to_display": route.to_display,
        "to_uri": route.to_uri,
        "extra_headers": [f"{name}: {value}" for name, value in route.extra_headers],
        "branch_flags": route.branch_flags,
        "fr_timer": route.fr_timer,
        "fr_inv_timer": route.fr_inv_timer,
    }


def decision_json(decision: Decision) -> dict[str, Any]:
    """The whole decision for an operator: what matched, what it beat, what was skipped."""
    return {
        "decision_id": decision.decision_id,
        "outcome": str(decision.outcome),
        "success": decision.success,
        "code": decision.code,
        "reason": decision.reason,
        "tenant": decision.tenant.slug if decision.tenant else None,
        "caller": decision.caller,
        "callee": decision.callee,
        "matched": _prefix_json(decision.matched) if decision.matched else None,
        "beaten": [_prefix_json(row) for row in decision.beaten],
        "routing": decision.routing,
        "routes": [_route_json(route) for route in decision.routes],
        "skipped": list(decision.skipped),
        "trace": list(decision.trace),
        "rtjson": to_rtjson(decision),
    }
