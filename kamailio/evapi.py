"""The EVAPI event protocol without I/O: one event payload in, one answer payload out.

Kamailio's evapi module sends each routing event as JSON such as
`{"event": "sip-routing", "tindex": N, "tlabel": N, "callee": "..."}` and resumes
the suspended transaction when the answer (the rtjson document plus
`"xtra": {"tindex": N, "tlabel": N}`) comes back. In the manner of the
`websockets` protocol layer, this module only turns bytes into events and
decisions into bytes; it never reads a socket nor calls the resolver. The
transport (evapi_bridge.bridge) does, for each payload the netstring decoder gives:

    event = parse_event(payload, default_tenant=...)
    RoutingEvent  -> decide event.request (or take a kamailio.rtjson failure),
                     then encode_answer(decision, tindex=..., tlabel=...)
    Invalid       -> encode_answer(event.decision, ...): a 400 naming the problem
    Ignored       -> nothing to send (not a routing event)
    Unanswerable  -> nothing can be sent (no transaction to resume): log it

So every routing event that names a transaction Kamailio can have gets exactly
one answer, also when it is malformed, and the protocol is tested with bytes alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kamailio.requests import CallFieldsError, call_request_from_fields
from kamailio.rtjson import Failure, encode, failure_decision, invalid_decision, to_rtjson
from routing.resolver import CallRequest, Decision

ROUTING_EVENT = "sip-routing"
# Kamailio's evapi reads each client into a 32 KB buffer (CLIENT_BUFFER_SIZE); a
# longer frame can never complete there and wedges the connection. Stay well below.
MAX_ANSWER = 32000
# tindex and tlabel are Kamailio's unsigned 32-bit transaction ids: a larger value
# names no transaction, and answering it would only make t_continue() fail.
MAX_TRANSACTION_ID = 2**32 - 1

# Kamailio configs often build the event by string templating; a quote in a
# display name then breaks the JSON. The transaction ids are plain integers that
# can still be read, so the call gets a failure answer instead of a timeout.
_SALVAGE_TINDEX = re.compile(rb'"tindex"\s*:\s*"?(\d{1,10})\b')
_SALVAGE_TLABEL = re.compile(rb'"tlabel"\s*:\s*"?(\d{1,10})\b')


@dataclass(frozen=True, slots=True)
class RoutingEvent:
    """A routing event to decide; answer it with encode_answer(decision, tindex, tlabel)."""

    tindex: int
    tlabel: int
    request: CallRequest


@dataclass(frozen=True, slots=True)
class Invalid:
    """A routing event that names its transaction but cannot be routed: answer `decision`."""

    tindex: int
    tlabel: int
    decision: Decision  # outcome invalid, 400, the problem in one short printable line
    error: str  # the whole problem, for the log


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not a routing event (evapi also relays other events): nothing to answer."""

    error: str


@dataclass(frozen=True, slots=True)
class Unanswerable:
    """A routing event without a transaction Kamailio can have: no answer can reach it."""

    error: str


Event = RoutingEvent | Invalid | Ignored | Unanswerable


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer payload (not yet framed) and the Decision it really carries."""

    payload: bytes
    decision: Decision
    # Set when the decision asked for could not be sent and a failure went instead.
    failure: Failure | None = None
    error: str = ""


def parse_event(payload: bytes, *, default_tenant: str | None) -> Event:
    """What one event payload asks for. Never raises.

    `default_tenant` is the slug used for events without a `source_ip` (the
    minimal tutorial event); None leaves the tenant to the source IP, so such
    calls are refused by the resolver with 403.
    """
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return _salvage(payload, "not valid JSON", f"event is not valid JSON ({exc})")
    except RecursionError:
        # Nested deeper than the parser's recursion limit: no routing event needs
        # that, and the ids at the top level can usually still be read.
        return _salvage(payload, "nested too deeply", "event is nested too deeply to be read")
    if not isinstance(event, dict):
        return Unanswerable(f"event is a JSON {type(event).__name__}, not an object")
    if event.get("event") != ROUTING_EVENT:
        return Ignored(f"not a routing event (event={event.get('event')!r})")

    tindex, tlabel, problem = _transaction(event)
    if problem:
        return Unanswerable(problem)
    tenant = None if event.get("source_ip") else default_tenant
    try:
        request = call_request_from_fields(event, tenant=tenant)
    except CallFieldsError as exc:
        return _invalid(tindex, tlabel, f"Bad Request: {exc}", str(exc))
    return RoutingEvent(tindex, tlabel, request)


def encode_answer(decision: Decision, *, tindex: int, tlabel: int) -> Answer:
    """The answer payload for `decision`: its rtjson document plus the transaction ids.

    An answer over MAX_ANSWER bytes would wedge Kamailio's evapi connection, so
    it is replaced by the ANSWER_TOO_LARGE failure (see `Answer.failure`).
    """
    payload = _payload(decision, tindex, tlabel)
    if len(payload) <= MAX_ANSWER:
        return Answer(payload, decision)
    failure = Failure.ANSWER_TOO_LARGE
    problem = f"answer of {len(payload)} bytes is over the {MAX_ANSWER} Kamailio can read"
    replacement = failure_decision(failure, problem)
    return Answer(_payload(replacement, tindex, tlabel), replacement, failure, problem)


def _payload(decision: Decision, tindex: int, tlabel: int) -> bytes:
    # The document's own bytes, then the ids: the same bytes HTTP sends inside {"rtjson": ...}.
    document = encode(to_rtjson(decision))
    return b'%s,"xtra":{"tindex":%d,"tlabel":%d}}' % (document[:-1], tindex, tlabel)


def _transaction(event: dict[str, Any]) -> tuple[int, int, str]:
    """(tindex, tlabel, "") or (0, 0, what is wrong)."""
    values = []
    for name in ("tindex", "tlabel"):
        value = event.get(name)
        # Ten digits at most: int() of a longer string is slow, or refused past 4300.
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problem = f"without a usable {name} ({_short(value)}): cannot be answered"
        elif value > MAX_TRANSACTION_ID:
            problem = f"with {name} {_short(value)} beyond 32 bits: no such transaction to answer"
        else:
            values.append(value)
            continue
        return 0, 0, f"routing event {problem}"
    return values[0], values[1], ""


def _salvage(payload: bytes, what: str, problem: str) -> Event:
    tindex = _SALVAGE_TINDEX.search(payload)
    tlabel = _SALVAGE_TLABEL.search(payload)
    if tindex is None or tlabel is None:
        return Unanswerable(f"{problem}; no tindex/tlabel to answer")
    ids = int(tindex.group(1)), int(tlabel.group(1))
    if max(ids) > MAX_TRANSACTION_ID:
        return Unanswerable(f"{problem}; tindex/tlabel {ids} beyond 32 bits, not answered")
    return _invalid(*ids, f"Bad Request: event is {what}", problem)


def _invalid(tindex: int, tlabel: int, reason: str, error: str) -> Invalid:
    return Invalid(tindex, tlabel, invalid_decision(reason, error), error)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
