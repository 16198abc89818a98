"""A Decision as the rtjson document Kamailio reads, and the one set of failure answers.

Both transports answer through here, so the same call (or the same failure)
gives the same document, byte for byte, over HTTP and over EVAPI:

- `to_rtjson(decision)` is the document; `encode(document)` its only JSON encoding.
- `Failure` lists what can go wrong on the engine's side, each with the SIP code
  and reason Kamailio relays to the caller; `failure_of(exc)` classifies an
  exception and `failure_decision(failure)` makes the Decision to answer with
  (outcome `error`, its own decision_id), so a failure is encoded like any
  other decision; `invalid_decision()` answers a request that is no call (400).
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

from django.db import Error as DatabaseError

from routing.resolver import Decision, Outcome, Route
from routing.validators import failover_tokens


class Failure(enum.Enum):
    """An engine-side failure and the answer Kamailio relays for it (success false)."""

    DATABASE_UNAVAILABLE = (503, "Routing Database Unavailable")
    ENGINE_FAILURE = (500, "Routing Engine Failure")
    OVERLOADED = (503, "Routing Engine Overloaded")
    ANSWER_TOO_LARGE = (500, "Routing Answer Too Large")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    @property
    def engine_failed(self) -> bool:
        """The engine itself failed (not the load, not one answer's size)."""
        return self in (Failure.DATABASE_UNAVAILABLE, Failure.ENGINE_FAILURE)


def failure_of(exc: BaseException) -> Failure:
    """The failure to answer for an exception raised while deciding.

    Any DB-API error counts as the database being unavailable, including
    InterfaceError ("connection already closed" after a server restart).
    """
    if isinstance(exc, DatabaseError):
        return Failure.DATABASE_UNAVAILABLE
    return Failure.ENGINE_FAILURE


def failure_decision(
    failure: Failure, detail: str = "", *, decision_id: str | None = None
) -> Decision:
    """The Decision that answers `failure`; `detail` (for logs) goes to the trace only."""
    extra = {"decision_id": decision_id} if decision_id is not None else {}
    return Decision(
        outcome=Outcome.ERROR,
        code=failure.code,
        reason=failure.reason,
        trace=(detail or failure.reason,),
        **extra,
    )


def invalid_decision(reason: str, error: str) -> Decision:
    """The Decision that answers a request that is not a routable call: 400 with
    `reason` (printable ASCII, at most 120 characters: it becomes a SIP reason
    phrase), `error` for the logs."""
    reason = _UNPRINTABLE.sub("?", reason)[:_MAX_REASON]
    return Decision(outcome=Outcome.INVALID, code=400, reason=reason, trace=(error,))


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_REASON = 120


def failover_regex(codes: str) -> str:
    """A trunk's failover codes as the regular expression t_check_status() takes:
    '5xx, 408, 486' -> '^(5[0-9][0-9]|408|486)$'."""
    tokens = [token.replace("x", "[0-9]") for token in failover_tokens(codes)]
    return f"^({'|'.join(tokens)})$"


def to_rtjson(decision: Decision) -> dict[str, Any]:
    """The rtjson document for `decision`.

    Kamailio's rtjson module reads version, routing and routes; the other keys
    (success, code, reason, decision_id, outcome, tenant, customer, plan, prefix,
    and carrier/trunk/trunk_id/failover/max_calls/max_cps per route) are for the
    config (via jansson) and for logs.
    """
    doc: dict[str, Any] = {
        "version": "1.0",
        "success": decision.success,
        "decision_id": decision.decision_id,
        "outcome": str(decision.outcome),
    }
    if decision.tenant is not None:
        doc["tenant"] = decision.tenant.slug
    if decision.customer is not None:
        doc["customer"] = decision.customer.name
    if decision.plan:
        doc["plan"] = decision.plan
    if decision.matched is not None:
        doc["prefix"] = decision.matched.prefix
    if not decision.success:
        doc.update(code=decision.code, reason=decision.reason, routing="serial", routes=[])
        return doc
    doc["routing"] = decision.routing
    doc["routes"] = [_route_json(route) for route in decision.routes]
    return doc


def encode(document: dict[str, Any]) -> bytes:
    """The one JSON encoding of an answer: compact, ASCII-only (non-ASCII as \\u escapes)."""
    return json.dumps(document, separators=(",", ":")).encode()


def _route_json(route: Route) -> dict[str, Any]:
    item: dict[str, Any] = {"uri": route.uri}
    if route.dst_uri:
        item["dst_uri"] = route.dst_uri
    if route.path:
        item["path"] = route.path
    if route.socket:
        item["socket"] = route.socket
    headers: dict[str, Any] = {}
    if route.from_uri is not None or route.from_display is not None:
        headers["from"] = {"display": route.from_display or "", "uri": route.from_uri or ""}
    if route.to_uri is not None:
        headers["to"] = {"display": route.to_display or "", "uri": route.to_uri}
    if route.extra_headers:
        headers["extra"] = "".join(f"{name}: {value}\r\n" for name, value in route.extra_headers)
    if headers:
        item["headers"] = headers
    if route.branch_flags is not None:
        item["branch_flags"] = route.branch_flags
    if route.fr_timer is not None:
        item["fr_timer"] = route.fr_timer
    if route.fr_inv_timer is not None:
        item["fr_inv_timer"] = route.fr_inv_timer
    if route.failover_codes:  # read by the shipped configs' failure_route
        item["failover"] = failover_regex(route.failover_codes)
    item["carrier"] = route.carrier
    item["trunk"] = route.trunk
    item["trunk_id"] = route.trunk_id  # echoed back in outcome events (kamailio.events)
    # The trunk's caps, enforced by the shipped configs (dialog profile, htable counter);
    # absent when the trunk has none. rtjson itself ignores keys it does not know.
    if route.max_calls is not None:
        item["max_calls"] = route.max_calls
    if route.max_cps is not None:
        item["max_cps"] = route.max_cps
    if route.rate is not None:  # least cost: for the config's headers or CDR variables
        item["rate"] = str(route.rate)
        item["currency"] = route.currency
    return item
