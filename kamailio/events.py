"""Outcome events from Kamailio, without I/O: bytes in, `Attempt`/`CallEnd` or a reason out.

Kamailio reports what became of a decision (over EVAPI with `evapi_relay`, or over
HTTP with `http_async_query` to `POST /api/v1/kamailio/events`); no answer is expected.
Decisions are not stored, so each event echoes what the rtjson answer gave the config
(top level `decision_id`, `tenant`, `prefix`, `customer`; per route `trunk_id`, `trunk`,
`carrier`) and the index of the route in `routes`. Two shapes:

    {"event": "sip-outcome", "kind": "attempt", "decision_id": "<32 hex>",
     "tenant": "acme", "route": 0, "trunk_id": 12, "trunk": "t1", "carrier": "C",
     "prefix": "33", "customer": "Shop", "call_id": "...",
     "code": 486, "pdd_ms": 1200, "answer_ms": null, "at": 1764449000.25}

    {"event": "sip-outcome", "kind": "end", "decision_id": "<32 hex>",
     "tenant": "acme", "route": 0, "trunk_id": 12, ..., "duration_s": 62.4, "at": ...}

Required: event, kind, decision_id, tenant, route, and `code` (attempt) or `duration_s`
(end). `code` is the branch's final SIP reply (100..699; 408 for a timeout without
reply); `pdd_ms` the milliseconds from sending the INVITE to the first provisional
reply above 100, `answer_ms` to the 200 OK; `at` the Unix time at Kamailio. Numbers
may come as strings (Kamailio configs often template JSON). Anything else is
`Malformed(reason)`: never an exception.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from outcomes.records import Attempt, Attribution, CallEnd, OutcomeEvent

OUTCOME_EVENT = "sip-outcome"
DECISION_ID = re.compile(r"[0-9a-f]{32}")
MAX_TEXT = 200  # names and prefixes are short; a longer value is not ours
MAX_MS = 24 * 3600 * 1000
MAX_DURATION_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Malformed:
    """Not a usable outcome event; `reason` says why (for the 400 and the log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotOutcome:
    """A JSON object that is not an outcome event (evapi relays other events too)."""

    event: str


def is_outcome(payload: bytes) -> bool:
    """A cheap test, before parsing, that a payload is an outcome event (for the bridge)."""
    return b'"sip-outcome"' in payload


def parse_event(payload: bytes) -> OutcomeEvent | Malformed | NotOutcome:
    """One event payload (a JSON object). Never raises."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return Malformed(f"not valid JSON ({str(exc)[:80]})")
    if not isinstance(value, dict):
        return Malformed(f"an event is a JSON object, not a {type(value).__name__}")
    return parse_fields(value)


def parse_batch(payload: bytes) -> list[OutcomeEvent | Malformed | NotOutcome] | Malformed:
    """A body of one event or a JSON array of events (HTTP). A bad body is one Malformed."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return Malformed(f"not valid JSON ({str(exc)[:80]})")
    if isinstance(value, dict):
        return [parse_fields(value)]
    if isinstance(value, list):
        return [
            parse_fields(item)
            if isinstance(item, dict)
            else Malformed(f"an event is a JSON object, not a {type(item).__name__}")
            for item in value
        ]
    return Malformed(f"expected an event or an array of events, not a {type(value).__name__}")


def parse_fields(event: dict[str, Any]) -> OutcomeEvent | Malformed | NotOutcome:
    """An event already decoded from JSON. Never raises."""
    name = event.get("event")
    if name != OUTCOME_EVENT:
        return NotOutcome(str(name)[:MAX_TEXT])
    try:
        kind = event.get("kind")
        of = _attribution(event)
        if kind == "attempt":
            code = _int(event, "code", low=100, high=699, required=True)
            return Attempt(
                of=of,
                code=code,
                pdd_ms=_int(event, "pdd_ms", low=0, high=MAX_MS),
                answer_ms=_int(event, "answer_ms", low=0, high=MAX_MS),
            )
        if kind == "end":
            duration = _number(event, "duration_s", low=0.0, high=MAX_DURATION_S, required=True)
            return CallEnd(of=of, duration_s=duration)
        return Malformed(f"kind must be 'attempt' or 'end', not {_short(kind)}")
    except _Bad as exc:
        return Malformed(str(exc))


class _Bad(ValueError):
    pass


def _attribution(event: dict[str, Any]) -> Attribution:
    decision_id = event.get("decision_id")
    if not isinstance(decision_id, str) or not DECISION_ID.fullmatch(decision_id):
        raise _Bad(f"decision_id must be 32 lowercase hex digits, not {_short(decision_id)}")
    tenant = _text(event, "tenant")
    if not tenant:
        raise _Bad("tenant is required (the answer's tenant slug)")
    at = _number(event, "at", low=0.0, high=4e9)
    return Attribution(
        decision_id=decision_id,
        tenant=tenant,
        route=_int(event, "route", low=0, high=1000, required=True),
        trunk_id=_int(event, "trunk_id", low=1, high=2**63 - 1),
        trunk=_text(event, "trunk"),
        carrier=_text(event, "carrier"),
        prefix=_text(event, "prefix"),
        customer=_text(event, "customer"),
        call_id=_text(event, "call_id"),
        at=at,
    )


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, not {_short(value)}")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise _Bad(f"{name} is too long or holds a NUL byte")
    return value


def _int(
    event: dict[str, Any], name: str, *, low: int, high: int, required: bool = False
) -> int | None:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise _Bad(f"{name} is required")
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{name} must be an integer, not {_short(value)}")
    if not low <= value <= high:
        raise _Bad(f"{name} must be between {low} and {high}, not {value}")
    return value


def _number(
    event: dict[str, Any], name: str, *, low: float, high: float, required: bool = False
) -> float | None:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise _Bad(f"{name} is required")
        return None
    if isinstance(value, str) and len(value) < 30:
        try:
            value = float(value)
        except ValueError:
            raise _Bad(f"{name} must be a number, not {_short(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{name} must be a number, not {_short(value)}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _Bad(f"{name} must be between {low:g} and {high:g}, not {value!r}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
